"""`aitasks db upgrade` creates a PostgreSQL database that does not exist yet (as `createdb`
would); a role that may not create one, and a gateway started before the database exists, get one
line saying what to run instead of a driver's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest

ADMIN = os.environ.get("AITASKS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "AITASKS_LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "aitasks", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def admin_role() -> str:
    """The admin's user (and password, where the server wants one) as the URL gives them."""
    return ADMIN.split("://", 1)[1].split("@", 1)[0]


def url_for(role: str, name: str) -> str:
    base = ADMIN.rsplit("/", 1)[0]
    scheme, rest = base.split("://", 1)
    host = rest.split("@", 1)[-1]
    return f"{scheme}://{role}@{host}/{name}"


@pytest.fixture
def missing_database() -> Iterator[str]:
    name = f"aitasks_new_{uuid.uuid4().hex[:10]}"
    yield name
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_creates_a_missing_database(missing_database: str) -> None:
    url = url_for(admin_role(), missing_database)
    done = cli("db", "upgrade", database_url=url)
    assert done.returncode == 0, done.stderr
    assert "Upgraded the database schema" in done.stdout
    again = cli("db", "current", database_url=url)
    assert again.returncode == 0, again.stderr


def test_a_role_that_may_not_create_it_gets_one_line(missing_database: str) -> None:
    role = f"aitasks_nocreate_{uuid.uuid4().hex[:6]}"
    admin(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'pw'")
    try:
        url = url_for(f"{role}:pw", missing_database)
        done = cli("db", "upgrade", database_url=url)
    finally:
        admin(f"DROP ROLE {role}")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"createdb {missing_database}" in lines[0]


def test_a_gateway_started_before_the_database_exists_says_what_to_run(
    missing_database: str,
) -> None:
    url = url_for(admin_role(), missing_database)
    done = cli("api", "--port", "1", database_url=url)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"database {missing_database!r} does not exist: run `aitasks db upgrade`, which creates it"
    ]
