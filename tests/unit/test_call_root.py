"""The hot routes' one dependency (api/call.py) makes links from the root the request reached, as
`get_links` does, though it remembers them: the same root for every way a request names its host,
and never one request's root for another's."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from aitasks.api import call


def request(scheme: str, host: bytes | None, server: tuple[str, int] | None) -> Request:
    headers = [(b"accept", b"*/*")] + ([(b"host", host)] if host is not None else [])
    scope: dict[str, Any] = {
        "type": "http", "scheme": scheme, "server": server, "path": "/v1/x", "root_path": "",
        "query_string": b"a=1", "headers": headers,
    }  # fmt: skip
    return Request(scope)


CASES = [
    ("http", b"example.com", ("10.0.0.1", 8000)),
    ("http", b"example.com:8080", ("10.0.0.1", 8000)),
    ("https", b"example.com", ("10.0.0.1", 443)),
    ("http", None, ("127.0.0.1", 8000)),
    ("http", None, ("127.0.0.1", 80)),
    ("https", None, ("127.0.0.1", 443)),
    ("http", b"[::1]:9000", None),
]


@pytest.mark.parametrize(("scheme", "host", "server"), CASES)
def test_the_root_is_the_one_the_request_reached(
    scheme: str, host: bytes | None, server: tuple[str, int] | None
) -> None:
    made = request(scheme, host, server)
    expected = str(made.url.replace(path="/", query="", fragment=""))
    assert call._root(made) == expected
    assert call._root(request(scheme, host, server)) == expected  # remembered, the same


def test_past_the_bound_roots_are_made_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call, "_roots", {})
    roots = {call._root(request("http", f"h{i}.test".encode(), None)) for i in range(100)}
    assert roots == {f"http://h{i}.test/" for i in range(100)}
    assert len(call._roots) == call.ROOTS_KEPT
