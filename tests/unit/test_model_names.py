"""Model names are the caller's text: routed names are well-formed, and what a process keeps per
name (metric labels, provider clients) is bounded by the model table, not by the names sent."""

import pytest

from aitasks.config import Settings
from aitasks.errors import InvalidRequest, UnknownModel
from aitasks.providers.pool import ProviderPool
from aitasks.routing import ModelTable


def table() -> ModelTable:
    return ModelTable.load(environ={"GEMINI_API_KEY": "k"}, implemented={"mock", "gemini"})


@pytest.mark.parametrize(
    "name",
    [
        "gemini-x/../../../admin#",
        "gemini-x/../admin",
        "gemini-x?alt=1",
        "gemini x",
        "gemini-%2e%2e",
        "gemini-x/",
        "/gemini-x",
        "gemini-x//y",
        "gemini-é",
        "gemini-" + "x" * 200,
    ],
)
def test_a_routed_name_that_could_steer_a_url_is_refused(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        table().resolve(name)
    assert caught.value.param == "model"


@pytest.mark.parametrize(
    "name", ["gemini-3-ultra", "gemini-2.5-flash-001", "org/gemini-exp:latest", "sdxl-turbo_v1.0"]
)
def test_well_formed_routed_names_pass(name: str) -> None:
    assert table().resolve(name).name == name


def test_a_name_matching_no_rule_is_still_unknown() -> None:
    with pytest.raises(UnknownModel):
        table().resolve("no/such..thing?")


def test_metric_labels_are_the_table_names_or_their_rule() -> None:
    models = table()
    assert models.label_of("gemini-2.5-flash") == "gemini-2.5-flash"
    assert {models.label_of(f"gemini-random-{n}") for n in range(300)} == {"gemini"}
    assert models.label_of("nothing-routes-this") == "other"


async def test_provider_clients_are_shared_per_upstream() -> None:
    models = table()
    pool = ProviderPool(Settings())
    try:
        clients = {id(pool.get(models.resolve(f"gemini-random-{n}"))) for n in range(60)}
        assert len(clients) == 1 and len(pool) == 1
        pool.get(models.resolve("mock-a"))
        pool.get(models.resolve("mock-b"))
        assert len(pool) == 2  # every mock model shares one
    finally:
        await pool.close()
    assert len(pool) == 0
