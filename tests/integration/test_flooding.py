"""A peer sending tasks faster than the receiver handles them meets backpressure.

The flooder sends 1,000 tasks without waiting for them to be handled; the sink takes 2 ms
over each. Its inbox holds at most INBOX_LIMIT tasks, and a send returns once the receiver
queued the task, so by the time the flooder's last send returned the sink must have begun
all but INBOX_LIMIT (and the one it was taking) of them: the sender was slowed to the
receiver's pace and the queue, the receiver's memory, stayed bounded. Without the bound
the flood is sent in a fraction of the time the sink needs, with most of it still queued.
"""

from __future__ import annotations

from pathlib import Path

from splittracer.participant.inbox import INBOX_LIMIT

from .helpers import run, workspace_with

COUNT = 1000

MANIFEST = f"""
name: flood
participants:
  flooder: {{role: "tests.integration.run_roles:Flooder"}}
  sink: {{role: "tests.integration.run_roles:SlowSink"}}
playbook:
  flooder:
    - task: Flood
      params: {{count: {COUNT}}}
"""


def test_a_flooding_sender_is_slowed_to_the_receivers_pace(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"flood": MANIFEST})
    outcome, store = run(ws, "flood")
    assert outcome.status == "succeeded", outcome.error
    metrics = store.metrics(outcome.run_id)
    (sent,) = [m.time_ns for m in metrics if m.name == "flood_sent"]
    started = sorted(m.time_ns for m in metrics if m.name == "blob_started")
    assert len(started) == COUNT
    begun = sum(t <= sent for t in started)
    print(f"flood: {begun} of {COUNT} tasks begun when the last send returned")
    assert begun >= COUNT - INBOX_LIMIT - 2, f"{begun} of {COUNT} begun when the flood was sent"
