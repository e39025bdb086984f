import pytest

from aitasks.worker.runner import backoff_seconds


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10])
def test_backoff_is_jittered_below_an_exponential_ceiling(attempt: int) -> None:
    delays = [backoff_seconds(attempt, base=1, cap=30, retry_after=None) for _ in range(200)]
    ceiling = min(30, 2 ** (attempt - 1))
    assert all(0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100  # jitter spreads retries apart


def test_backoff_never_comes_before_retry_after() -> None:
    assert all(backoff_seconds(1, base=1, cap=30, retry_after=7) >= 7 for _ in range(50))
