import pytest

from aitasks.backoff import backoff_seconds


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10])
def test_backoff_is_jittered_below_an_exponential_ceiling(attempt: int) -> None:
    delays = [backoff_seconds(attempt, base=1, cap=30) for _ in range(200)]
    ceiling = min(30, 2 ** (attempt - 1))
    assert all(0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100  # jitter spreads retries apart


def test_backoff_never_comes_before_retry_after() -> None:
    assert all(backoff_seconds(1, base=1, cap=30, at_least=7) >= 7 for _ in range(50))


def test_backoff_without_jitter_doubles_up_to_its_cap() -> None:
    delays = [backoff_seconds(n, base=0.5, cap=5, jitter=False) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
