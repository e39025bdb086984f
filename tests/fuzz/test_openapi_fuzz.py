"""Property-based fuzzing of the gateway against its own `/openapi.json`, with schemathesis.

A real gateway and a worker run as processes on a fresh PostgreSQL database and Redis prefix, with
auth on; every generated case carries one key made by `aitasks keys create`. Whatever schemathesis
sends, the gateway must answer without a 5xx and with an answer its own schema allows (status
code, content type, body), accept what the schema allows and refuse what it does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.processes import Process, free_port, run_cli, wait_until_up
from tests.support.services import upgraded_stack

# Examples per operation: about 20 s for the whole file on two cores.
MAX_EXAMPLES = 15

# Schema-valid requests that this API refuses with 400 by design, so the positive-data check takes
# 400 from them: the model name is checked against the model table at run time (`unknown_model`,
# `wrong_model_kind`; the table and its prefix rules are configuration, so the schema cannot list
# them), and `after` is an opaque cursor the server issued (an unknown one is `invalid_request`).
SEMANTIC_400 = r"^/v1/(chat/completions|images/generations|tasks|conversations)$"
POSITIVE_DATA_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
# An upload's bytes are checked to be an image of a size the server allows, which no schema of a
# binary field can say: schema-valid bytes that are not one are 415 (or 413) by design.
UPLOAD = r"^/v1/files$"
UPLOAD_STATUSES = [*POSITIVE_DATA_STATUSES, "413", "415"]
# A batch's lines are checked whole at run time (each line's model against the table, its fields
# against the seed's submit): a batch with a bad line is `failed`, answered 422 with every bad line
# named (README), which a schema of "a list of requests" cannot say; a bad page cursor is 400.
BATCHES = r"^/v1/batches$"
BATCH_STATUSES = [*POSITIVE_DATA_STATUSES, "422"]


@dataclass
class Gateway:
    base_url: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("fuzz")
    with upgraded_stack(folder, AITASKS_MOCK_LATENCY_MS="0", AITASKS_AUTH="on") as env:
        made = run_cli(["keys", "create", "--name", "fuzz"], env, folder)
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip().splitlines()[-1]  # the key is the last line it prints

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        processes = [
            Process(["api", "--port", str(port)], env, folder),
            Process(["worker", "--concurrency", "4"], env, folder),
        ]
        try:
            wait_until_up(base_url, processes[0])
            yield Gateway(base_url, key)
        finally:
            for process in processes:
                process.stop()


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            # Reports hide only the key: `Idempotency-Key` must show, to reproduce a failure.
            "output": {
                "sanitization": {
                    "keys-to-sanitize": ["authorization"],
                    "sensitive-markers": ["authorization"],
                }
            },
            "operations": [
                {
                    "include-path-regex": SEMANTIC_400,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": POSITIVE_DATA_STATUSES}
                    },
                },
                {
                    "include-path-regex": UPLOAD,
                    "checks": {"positive_data_acceptance": {"expected-statuses": UPLOAD_STATUSES}},
                },
                {
                    "include-path-regex": BATCHES,
                    "checks": {"positive_data_acceptance": {"expected-statuses": BATCH_STATUSES}},
                },
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json", config=config)


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    """Shim: schemathesis 4.32's lazy loader reads and writes `Function._nodeid`, which pytest 9.2
    no longer has (the id is `_id` now); without it the fuzz test dies with AttributeError before
    sending anything. Only the names schemathesis gives its per-operation subtests depend on it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# `/` and `/static` (the web page) and `/openai` are not in the schema, so there is nothing to
# exclude for them.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    # Server-Sent Events: a stream that stays open until its task ends, not one answer to check.
    path="/v1/tasks/{task_id}/events",
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run, so CI is deterministic
    database=None,  # and nothing written to .hypothesis/
    deadline=None,
    # A real service over HTTP is slow by Hypothesis's measure, and some operations have few
    # distinct inputs; neither is a problem here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_answers_match_the_schema(
    case: schemathesis.Case, gateway: Gateway
) -> None:
    excluded = []
    if any(name.lower() == "idempotency-key" for name in case.headers or {}):
        # Hypothesis sends the same key with different bodies, and by design that is `422
        # idempotency_key_reused` (README), not a valid request refused.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.call_and_validate(
        base_url=gateway.base_url, headers=gateway.headers, timeout=10, excluded_checks=excluded
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/conversations"),
        ("GET", "/v1/status"),
        ("POST", "/v1/chat/completions"),
    ],
)
def test_without_the_key_the_answer_is_401(gateway: Gateway, method: str, path: str) -> None:
    # Said by hand too: a missing key and a made-up one, each a 401 in the API's error shape.
    body = {"prompt": "hi", "model": "mock-chat"} if method == "POST" else None
    answer = httpx.request(method, f"{gateway.base_url}{path}", json=body, timeout=10)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "unauthorized"
    wrong = httpx.request(
        method,
        f"{gateway.base_url}{path}",
        json=body,
        headers={"Authorization": "Bearer ait_0000000000000000_not-a-key"},
        timeout=10,
    )
    assert wrong.status_code == 401, wrong.text
