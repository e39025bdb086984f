"""A batch survives its faults: a worker SIGKILLed while it runs the batch's lines, then Redis
restarted empty (every lane, stream and group gone), and still every line is answered once, in
the output file by its custom_id, through the official SDK against real processes."""

from __future__ import annotations

import json
import time

from tests.support.faults import OwnRedisSystem, restart_empty, wait_until
from tests.support.processes import Background
from tests.support.sdk import openai_at
from tests.support.services import query

LINES = 120


def test_a_batch_survives_a_killed_worker_and_an_empty_redis(
    own_redis_system: OwnRedisSystem, redis_server: Background
) -> None:
    system = own_redis_system(AITASKS_MOCK_LATENCY_MS="100", AITASKS_WORKER_CONCURRENCY="4")
    [(_, base_url)], [doomed, _] = system.up(gateways=1, workers=2)
    sdk = openai_at(base_url)
    requests = "".join(
        json.dumps({"custom_id": f"line-{n}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "mock-chat",
                             "messages": [{"role": "user", "content": f"item {n}"}]}}) + "\n"
        for n in range(LINES)
    )  # fmt: skip
    uploaded = sdk.files.create(file=("lines.jsonl", requests.encode()), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    task_ids = [row[0] for row in query(
        system.database_url, f"SELECT id FROM tasks WHERE batch_id = '{batch.id}'"
    )]  # fmt: skip
    assert len(task_ids) == LINES
    wait_until(lambda: system.running_on(doomed.popen.pid, task_ids) >= 2)
    doomed.kill()  # SIGKILL, mid-line
    restart_empty(redis_server)  # the lanes, the streams and their groups are gone

    report = system.report(task_ids, within=120)
    assert report.succeeded == LINES and not report.lost and not report.doubled
    deadline = time.monotonic() + 30
    while (done := sdk.batches.retrieve(batch.id)).status != "completed":
        assert time.monotonic() < deadline, done.status
        time.sleep(0.2)
    assert done.request_counts is not None and done.request_counts.completed == LINES
    assert done.output_file_id is not None and done.error_file_id is None
    output = sdk.files.content(done.output_file_id).text.splitlines()
    answered = [json.loads(line)["custom_id"] for line in output]
    assert sorted(answered) == sorted(f"line-{n}" for n in range(LINES))
    assert len(answered) == len(set(answered)) == LINES
    print(f"batch {batch.id}: {LINES} lines, each answered once; {report}")
