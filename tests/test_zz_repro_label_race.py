"""Repro (kept out of the suite): a label intent updated while a write-back job is running is marked done
without ever being written."""
from datetime import datetime, timedelta, timezone

import responses
from rq import Queue, SimpleWorker

from faults import HelpdeskState, Traffic
from plugin import writeback
from plugin.ingest import EVENTS_QUEUE
from test_faults import plant, submit, work_all  # noqa: F401 (fixture)


def test_label_intent_changed_during_a_write_back_is_not_lost(plant):
    runtime = plant.runtime
    bodies = Traffic().conversation(1, "hit")  # created 3 h ago, answered after 10 min, resolved
    events = Queue(EVENTS_QUEUE, connection=runtime.redis)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = HelpdeskState()
        helpdesk.register(mock)
        submit(runtime.redis, bodies[:1])  # only the creation has arrived: first response missed
        SimpleWorker([events], connection=runtime.redis).work(burst=True)
        client = writeback.client_for(runtime)
        original = client.conversation_labels

        def labels_while_the_reply_arrives(conversation_id):
            # The job has read its intent ("missed"); now the late reply and the resolution are processed.
            submit(runtime.redis, bodies[1:])
            SimpleWorker([events], connection=runtime.redis).work(burst=True)
            return original(conversation_id)

        client.conversation_labels = labels_while_the_reply_arrives
        writeback.Writer(runtime, client).deliver(1, 1001)
        work_all(runtime.redis)
    assert runtime.store.summary((1, 1001))["label"] == "on_track"
    assert helpdesk.labels[1001] == ["billing", "sla-on-track"]
