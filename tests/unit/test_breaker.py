import pytest

from aitasks.errors import ProviderUnavailable
from aitasks.worker import breaker as breaker_module
from aitasks.worker.breaker import CircuitBreaker


def test_opens_after_failures_in_a_row_then_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(breaker_module.time, "monotonic", lambda: now[0])
    breaker = CircuitBreaker(threshold=3, cooldown=10)
    for _ in range(2):
        breaker.before_call("m")
        breaker.failed("m")
    breaker.before_call("m")  # two failures: still closed
    breaker.failed("m")
    with pytest.raises(ProviderUnavailable):
        breaker.before_call("m")  # open: fail fast
    breaker.before_call("other")  # other models are not affected

    now[0] += 11
    breaker.before_call("m")  # half open: one probe goes through
    with pytest.raises(ProviderUnavailable):
        breaker.before_call("m")  # ... and only one
    breaker.failed("m")  # the probe failed: open again
    with pytest.raises(ProviderUnavailable):
        breaker.before_call("m")

    now[0] += 11
    breaker.before_call("m")
    breaker.succeeded("m")  # the probe succeeded: closed
    breaker.before_call("m")
    breaker.before_call("m")


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    breaker.failed("m")
    breaker.succeeded("m")
    breaker.failed("m")
    breaker.before_call("m")
