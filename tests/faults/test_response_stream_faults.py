"""A background response's stream under faults, with real processes, through the official SDK: read
on one gateway until a few pieces of its reply came, then the worker running it SIGKILLed and
Redis restarted empty (its event log gone with it); resumed on another gateway with
`starting_after`, the stream goes on from where the reader was: no number missed or repeated, and
the joined text is the response's `output_text`, made by the attempt that replaced the killed one.

The report of what became of the response ends the test (lost and doubled must be 0)."""

from __future__ import annotations

from openai.types.responses import ResponseCompletedEvent

from tests.support.faults import OwnRedisSystem, restart_empty
from tests.support.processes import Background
from tests.support.sdk import a_few_events, joined, openai_at
from tests.support.services import query


def test_a_stream_resumes_on_another_gateway_after_its_worker_died_and_redis_was_emptied(
    own_redis_system: OwnRedisSystem, redis_server: Background
) -> None:
    system = own_redis_system(AITASKS_MOCK_LATENCY_MS="5000", AITASKS_SSE_HEARTBEAT_SECONDS="1")
    [(_, one_url), (_, two_url)], [doomed] = system.up(gateways=2, workers=1)
    with openai_at(one_url) as one, openai_at(two_url) as two:
        first = a_few_events(one, "a story to outlive its worker")
        response_id = first[0].response.id
        task_id = response_id.removeprefix("resp_")

        doomed.kill()  # SIGKILL, mid-reply
        restart_empty(redis_server)  # the response's event log is gone
        system.worker()

        rest = list(
            two.responses.retrieve(
                response_id, stream=True, starting_after=first[-1].sequence_number
            )
        )
        events = first + rest
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert isinstance(events[-1], ResponseCompletedEvent)
        final = two.responses.retrieve(response_id)
        text = joined(events)
        assert final.status == "completed" and text == final.output_text
        assert text.startswith('Mock reply to "a story to outlive its worker')
        ((attempts,),) = query(
            system.database_url, f"SELECT attempts FROM tasks WHERE id = '{task_id}'"
        )
        assert attempts >= 2  # run again after the kill, not finished by the killed worker

    report = system.report([task_id], within=30)
    assert report.succeeded == 1 and not report.lost and not report.doubled
    print(f"stream resumed after {first[-1].sequence_number} of {len(events)} events; {report}")
