"""Background responses survive their faults like any task: a worker SIGKILLed while it runs
them, then Redis restarted empty (every lane, stream and group gone), and still each response
ends `completed` exactly once, polled through the official SDK against real processes."""

from __future__ import annotations

from tests.support.faults import OwnRedisSystem, restart_empty, wait_until
from tests.support.processes import Background
from tests.support.sdk import openai_at

RESPONSES = 8


def test_background_responses_survive_a_killed_worker_and_an_empty_redis(
    own_redis_system: OwnRedisSystem, redis_server: Background
) -> None:
    system = own_redis_system(AITASKS_MOCK_LATENCY_MS="1500", AITASKS_WORKER_CONCURRENCY="4")
    [(_, base_url)], [doomed, _] = system.up(gateways=1, workers=2)
    sdk = openai_at(base_url)
    queued = [
        sdk.responses.create(model="mock-chat", input=f"question {n}", background=True)
        for n in range(RESPONSES)
    ]
    assert {r.status for r in queued} == {"queued"}
    task_ids = [r.id.removeprefix("resp_") for r in queued]
    wait_until(lambda: system.running_on(doomed.popen.pid, task_ids) >= 1)
    doomed.kill()  # SIGKILL, mid-reply
    restart_empty(redis_server)

    report = system.report(task_ids, within=90)
    assert report.succeeded == RESPONSES and not report.lost and not report.doubled
    for n, response in enumerate(queued):
        done = sdk.responses.retrieve(response.id)
        assert done.status == "completed", done
        assert done.output_text.startswith(f'Mock reply to "question {n}"')
        assert len(done.output) == 1
    print(f"{RESPONSES} background responses, each completed once; {report}")
