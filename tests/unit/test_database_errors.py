"""The one database boundary (`store.database`) and how both HTTP surfaces answer what crosses it:
an outage is a 503 with `Retry-After`, a refused value a 400, anything else a 500, whether the
driver's error was translated inside a session or escaped outside one."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from aitasks.api.error_handlers import install_error_handlers
from aitasks.api.openai.error_shape import install_openai_error_handlers
from aitasks.errors import DatabaseUnavailable, ValueRefused
from aitasks.store.database import database_boundary, translated


class DriverError(Exception):
    """What asyncpg raises: an exception with the server's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def driver_error(sqlstate: str) -> DBAPIError:
    """The driver's error as SQLAlchemy wraps it."""
    return DBAPIError("SELECT 1", None, DriverError(sqlstate))


OUTAGES: dict[str, Callable[[], Exception]] = {
    "connection refused": lambda: ConnectionRefusedError(111, "refused"),
    "server shutting down": lambda: driver_error("57P01"),
    "read-only fail-over": lambda: driver_error("25006"),
    "connection exception class": lambda: driver_error("08006"),
    "operational": lambda: OperationalError("SELECT 1", None, DriverError("")),
}


def refused_value() -> DBAPIError:
    return driver_error("22021")  # a NUL byte in text


def a_bug() -> DBAPIError:
    return driver_error("42601")  # a syntax error


@pytest.mark.parametrize("make", OUTAGES.values(), ids=OUTAGES.keys())
def test_an_outage_is_translated_to_database_unavailable(make: Callable[[], Exception]) -> None:
    assert isinstance(translated(make()), DatabaseUnavailable)
    with pytest.raises(DatabaseUnavailable) as raised, database_boundary():
        raise make()
    assert raised.value.status_code == 503
    assert raised.value.__cause__ is not None  # the driver's error is kept for the log


def test_a_refused_value_is_translated_but_passes_the_session_boundary() -> None:
    assert isinstance(translated(refused_value()), ValueRefused)
    # Inside a session it passes as it is: only the HTTP surfaces make it the client's fault.
    with pytest.raises(DBAPIError), database_boundary():
        raise refused_value()


def test_anything_else_is_left_as_it_is() -> None:
    for error in (a_bug(), IntegrityError("INSERT", None, DriverError("23505")), KeyError("x")):
        assert translated(error) is error
    with pytest.raises(IntegrityError), database_boundary():
        raise IntegrityError("INSERT", None, DriverError("23505"))


def surface(install: Callable[[FastAPI], None]) -> httpx.AsyncClient:
    """An app with the surface's handlers and a route raising what each case names."""
    app = FastAPI()
    install(app)
    cases: dict[str, Callable[[], Exception]] = {
        **OUTAGES,
        "translated": lambda: DatabaseUnavailable("the database is unavailable; retry shortly"),
        "refused": refused_value,
        "bug": a_bug,
    }

    @app.get("/raise/{case}")
    async def raising(case: str) -> None:
        raise cases[case]()

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.mark.parametrize("case", [*OUTAGES, "translated"])
async def test_an_outage_is_a_503_with_retry_after_on_both_surfaces(case: str) -> None:
    async with surface(install_error_handlers) as seed:
        answer = await seed.get(f"/raise/{case}")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert answer.json() == {
        "error": {
            "type": "service_unavailable",
            "message": "the database is unavailable; retry shortly",
            "param": None,
        }
    }
    async with surface(install_openai_error_handlers) as openai:
        answer = await openai.get(f"/raise/{case}")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert answer.json() == {
        "error": {
            "message": "the database is unavailable; retry shortly",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    }


async def test_a_refused_value_is_a_400_on_both_surfaces() -> None:
    async with surface(install_error_handlers) as seed:
        answer = await seed.get("/raise/refused")
    assert answer.status_code == 400
    assert "retry-after" not in answer.headers
    assert answer.json() == {
        "error": {
            "type": "invalid_request",
            "message": "a value in the request cannot be stored",
            "param": None,
        }
    }
    async with surface(install_openai_error_handlers) as openai:
        answer = await openai.get("/raise/refused")
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "message": "a value in the request cannot be stored",
            "type": "invalid_request_error",
            "param": None,
            "code": "bad_value",
        }
    }


async def test_any_other_database_error_is_a_500_that_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with surface(install_error_handlers) as seed:
        answer = await seed.get("/raise/bug")
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "internal_error"
    assert "42601" not in answer.text
    async with surface(install_openai_error_handlers) as openai:
        answer = await openai.get("/raise/bug")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert "42601" not in answer.text
    assert "SQLSTATE 42601" in caplog.text  # the traceback went to the log
