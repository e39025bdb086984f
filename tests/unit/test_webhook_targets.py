"""Where a webhook may go: malformed URLs are a clear refusal at submit (never a 500, never a
delivery retried forever), and IPv4 addresses hidden in IPv6 ones are judged as themselves."""

import pytest

from aitasks.webhooks.targets import RefusedTarget, check_url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://example.com/hook\r\nX-Injected: 1", "control characters"),
        ("http://example.com/a b", "spaces"),
        ("http://[::1/", "not a valid URL"),
        ("http://[2002:7f00:1::1]/hook", "loopback"),  # 6to4 around 127.0.0.1
        ("http://[2002:a00:1::1]/hook", "private"),  # 6to4 around 10.0.0.1
        ("http://[fec0::1]/hook", "site-local"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
    ],
)
def test_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(RefusedTarget) as caught:
        check_url(url, allow_private=False)
    assert says in caught.value.message
    assert caught.value.param == "callback_url"


def test_a_malformed_url_is_refused_even_where_private_targets_are_allowed() -> None:
    with pytest.raises(RefusedTarget):
        check_url("http://example.com/\nx", allow_private=True)


@pytest.mark.parametrize(
    "url", ["https://example.com/hook?a=1", "http://[2002:808:808::1]/", "http://8.8.8.8:8080/"]
)
def test_public_targets_pass(url: str) -> None:
    assert check_url(url, allow_private=False) == url
