"""The worker: claim, run, lease, complete."""

from aitasks.worker.runner import Worker

__all__ = ["Worker"]
