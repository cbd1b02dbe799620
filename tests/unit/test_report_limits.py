"""How results show the limits a run's participants ran under."""

from __future__ import annotations

from splittracer.metrics.record import ParticipantRecord, RunRecord
from splittracer.report.limits import limits_lines


def record(**participants: ParticipantRecord) -> RunRecord:
    return RunRecord(participants=participants, launch=dict.fromkeys(participants, "ssh"))


def test_a_hosts_limits_show_where_the_participant_had_none_of_its_own():
    host = ParticipantRecord(enforced_cpu=0.25, enforced_memory_bytes=2 << 30)
    assert limits_lines(record(pi=host)) == [
        "pi: cpu 0.25 (enforced on its host), memory 2 GiB (enforced on its host) [ssh]"
    ]


def test_the_participants_own_limit_read_back_is_not_repeated_but_a_tighter_host_is_shown():
    own = ParticipantRecord(cpu_limit=0.5, cpu_period_us=10_000, enforced_cpu=0.5)
    tighter = ParticipantRecord(cpu_limit=0.5, cpu_period_us=10_000, enforced_cpu=0.2)
    assert limits_lines(record(phone=own)) == ["phone: cpu 0.5 (5 ms per 10 ms) [ssh]"]
    assert limits_lines(record(phone=tighter)) == [
        "phone: cpu 0.5 (5 ms per 10 ms), cpu 0.2 (enforced on its host) [ssh]"
    ]
    assert limits_lines(record(cloud=ParticipantRecord())) == []
