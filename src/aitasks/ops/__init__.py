"""What the operations page at `/ops` shows beyond `/v1/status`: a bounded time-series of the
service's figures, sampled by the gateway (`sampler.py`, stored by `series.py`: in Redis, or in
the database on the embedded default), and one task's timeline (`timeline.py`)."""

from aitasks.ops.sampler import Sampler
from aitasks.ops.series import SERIES_SECONDS, Sample, Series, open_series
from aitasks.ops.timeline import task_timeline

__all__ = ["SERIES_SECONDS", "Sample", "Sampler", "Series", "open_series", "task_timeline"]
