"""A circuit breaker per model, in each worker: stop calling a provider that keeps failing.

After `threshold` retryable failures in a row the circuit opens: calls to that model fail at once
(and so fall back, when the model has fallbacks) for `cooldown` seconds. Then one call is let
through as a probe; its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aitasks.errors import ProviderUnavailable

FAILURE_THRESHOLD = 5
COOLDOWN_SECONDS = 30.0


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreaker:
    def __init__(
        self, *, threshold: int = FAILURE_THRESHOLD, cooldown: float = COOLDOWN_SECONDS
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._circuits: dict[str, _Circuit] = {}

    def before_call(self, model: str) -> None:
        """Raise `ProviderUnavailable` while the model's circuit is open."""
        circuit = self._circuits.get(model)
        if circuit is None or circuit.failures < self.threshold:
            return
        if time.monotonic() < circuit.open_until or circuit.probing:
            raise ProviderUnavailable(
                f"{model}: failing fast after {circuit.failures} failures in a row; "
                f"probing again within {self.cooldown:g}s"
            )
        circuit.probing = True  # half open: this call is the probe

    def succeeded(self, model: str) -> None:
        self._circuits.pop(model, None)

    def failed(self, model: str) -> None:
        circuit = self._circuits.setdefault(model, _Circuit())
        circuit.failures += 1
        circuit.probing = False
        if circuit.failures >= self.threshold:
            circuit.open_until = time.monotonic() + self.cooldown
