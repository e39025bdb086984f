"""The circuit breaker: it opens after `threshold` failures in a row, fails fast while open, lets
one probe through after the cooldown, and closes on the probe's success."""

import pytest

from aitasks.errors import ProviderUnavailable
from aitasks.worker import breaker as breaker_module
from aitasks.worker.breaker import CircuitBreaker


def allows(breaker: CircuitBreaker, model: str) -> bool:
    """Whether a call to `model` may go ahead now (a half-open circuit's probe counts as one)."""
    try:
        breaker.before_call(model)
    except ProviderUnavailable:
        return False
    return True


def test_opens_after_failures_in_a_row_then_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(breaker_module.time, "monotonic", lambda: now[0])
    breaker = CircuitBreaker(threshold=3, cooldown=10)
    for _ in range(2):
        assert allows(breaker, "m")
        breaker.failed("m")
    assert allows(breaker, "m")  # two failures: still closed
    breaker.failed("m")
    assert not allows(breaker, "m")  # open: fail fast
    assert allows(breaker, "other")  # other models are not affected
    now[0] += 9
    assert not allows(breaker, "m")  # still within the cooldown

    now[0] += 2
    assert allows(breaker, "m")  # half open: one probe goes through
    assert not allows(breaker, "m")  # ... and only one
    breaker.failed("m")  # the probe failed: open again, for another cooldown
    assert not allows(breaker, "m")
    now[0] += 9
    assert not allows(breaker, "m")

    now[0] += 2
    assert allows(breaker, "m")
    breaker.succeeded("m")  # the probe succeeded: closed
    assert allows(breaker, "m") and allows(breaker, "m")
    breaker.failed("m")
    assert allows(breaker, "m")  # and counting from zero again


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    breaker.failed("m")
    breaker.succeeded("m")
    breaker.failed("m")
    assert allows(breaker, "m")  # one failure in a row, not two
    breaker.failed("m")
    assert not allows(breaker, "m")  # the second in a row opens it


def test_failing_fast_says_why() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=30)
    breaker.failed("gemini-2.5-flash")
    with pytest.raises(ProviderUnavailable, match=r"gemini-2\.5-flash: .*1 failures in a row"):
        breaker.before_call("gemini-2.5-flash")
