"""Fleets: replicas, stages, run-wide inference ids, when a run with several clients ends."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from splittracer.controller.clients import Clients
from splittracer.controller.resolve import resolve_run
from splittracer.errors import ConfigError, RunError
from splittracer.manifest import load_manifest
from splittracer.metrics.spans import client_of, inference_id
from splittracer.participant.context import ParticipantContext
from splittracer.participant.recorder import TaggedRecorder
from splittracer.wire.messages import RunConfig, RunOptions

FLEET = """
name: fleet
participants:
  camera: {role: "splittracer.builtin:SplitHead", replicas: 3}
  edge: {role: "splittracer.builtin:SplitTail", replicas: 2}
  cloud: {role: "splittracer.builtin:SplitTail", stage: 1}
playbook:
  camera:
    - task: Finish
"""


def _manifest(tmp_path: Path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return load_manifest(path, check_code=False)


def test_replicas_get_stable_names_a_shared_stage_and_each_a_playbook(tmp_path: Path) -> None:
    run = resolve_run(_manifest(tmp_path, FLEET))
    names = [(p.name, p.stage, p.group, p.replica) for p in run.participants]
    assert names == [
        ("camera-0", 0, "camera", 0),
        ("camera-1", 0, "camera", 1),
        ("camera-2", 0, "camera", 2),
        ("edge-0", 1, "edge", 0),
        ("edge-1", 1, "edge", 1),
        ("cloud", 1, "", 0),  # stage as written, not its place in the manifest
    ]
    assert [name for name, _ in run.playbook] == ["camera-0", "camera-1", "camera-2"]
    assert run.groups == {"camera": ["camera-0", "camera-1", "camera-2"], "edge": ["edge-0", "edge-1"]}
    assert run.clients == ("camera-0", "camera-1", "camera-2")
    assert [run.client_index(n) for n in ("camera-0", "camera-2", "edge-0")] == [0, 2, -1]


def test_one_client_keeps_its_plain_ids(tmp_path: Path) -> None:
    run = resolve_run(_manifest(tmp_path, FLEET.replace("replicas: 3", "replicas: 1")))
    assert run.clients == ("camera",) and run.client_index("camera") == -1
    assert inference_id(-1, 7) == 7


def test_a_replica_name_taken_by_another_participant_is_refused(tmp_path: Path) -> None:
    text = FLEET.replace("  cloud:", "  camera-1: {role: splittracer.builtin:SplitTail}\n  cloud:")
    with pytest.raises(ConfigError, match="would both run a participant named 'camera-1'"):
        _manifest(tmp_path, text)


def test_a_negative_stage_is_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _manifest(tmp_path, FLEET.replace("stage: 1", "stage: -1"))
    assert info.value.key == "participants.cloud.stage" and info.value.line == 6


def test_inference_ids_are_disjoint_per_client() -> None:
    ids = {inference_id(c, s) for c in range(4) for s in range(10)}
    assert len(ids) == 40
    assert client_of(inference_id(3, 9)) == 3 and inference_id(2, 5) == 2_000_005
    with pytest.raises(RunError):
        inference_id(1, 1_000_000)


def _context(name: str, replica: int, client: int) -> ParticipantContext:
    config = RunConfig(
        run_id="r",
        name=name,
        stage=0,
        role="m:R",
        peers={},
        options=RunOptions(),
        groups={"edge": ["edge-0", "edge-1"]},
        replica=replica,
        client=client,
    )
    return ParticipantContext(config, TaggedRecorder("r", name, 0), lambda *a: None, lambda *a, **k: None)


def test_a_group_name_reaches_one_replica_per_sender() -> None:
    reached = [_context(f"camera-{i}", i, i).resolve_peer("edge") for i in range(4)]
    assert reached == ["edge-0", "edge-1", "edge-0", "edge-1"]
    assert _context("camera-0", 0, 0).resolve_peer("cloud") == "cloud"


def test_inference_spans_carry_the_run_wide_id_and_the_client() -> None:
    ctx = _context("camera-2", 2, 2)
    with ctx.inference(4, split=3):
        assert ctx.tags.inference == 2_000_004
    [span] = ctx._recorder.drain()
    assert (span.inference, span.attrs["client"]) == (2_000_004, "camera-2")


def test_the_run_waits_for_every_client() -> None:
    clients = Clients(("a", "b"))
    clients.finished("a")
    assert not clients.all_done
    clients.finished("b")
    assert clients.all_done
    clients.raise_failures()  # none failed


def test_a_server_or_everyone_ends_the_run_at_once() -> None:
    server, loud = Clients(("a", "b")), Clients(("a", "b"))
    server.finished("edge")
    loud.finished("a", everyone=True)
    assert server.all_done and loud.all_done


def test_a_failed_client_is_set_aside_and_named() -> None:
    clients = Clients(("a", "b", "c"))
    assert clients.failed("b", "participant 'b': boom")
    assert not clients.failed("edge", "participant 'edge': boom")  # no client: the run fails now
    clients.finished("a")
    clients.finished("c")
    assert clients.all_done
    with pytest.raises(RunError, match=r"1 of 3 clients failed \(b\)"):
        clients.raise_failures()
    assert not Clients(("a",)).failed("a", "x")  # a lone client's failure is the run's


def test_workers_need_a_role_that_allows_them(tmp_path: Path) -> None:
    from splittracer.errors import UserCodeError
    from splittracer.manifest import check_user_code

    manifest = _manifest(tmp_path, FLEET.replace("replicas: 3", "replicas: 3, workers: 2"))
    with pytest.raises(UserCodeError, match="asks for 2 workers") as info:
        check_user_code(manifest, tmp_path)
    assert "parallel = True" in (info.value.hint or "")
    tail = _manifest(tmp_path, FLEET.replace("replicas: 2", "replicas: 2, workers: 4"))
    check_user_code(tail, tmp_path)  # the built-in tail may serve several at once
    assert resolve_run(tail).participants[3].workers == 4


@pytest.mark.parametrize("name", ["fleet", "stream"])
def test_the_scaffold_ships_a_fleet_and_a_stream_that_resolve(tmp_path: Path, name: str) -> None:
    from splittracer.workspace import init_workspace

    workspace = init_workspace(tmp_path / "ws")
    manifest = workspace.load_manifest(name)
    run = resolve_run(manifest, workspace.root)
    if name == "fleet":
        assert run.clients == ("camera-0", "camera-1", "camera-2", "camera-3")
    assert {type(task).__name__ for _, task in run.playbook} == {"Stream"}


def test_a_batch_gives_the_workers_it_needs(tmp_path: Path) -> None:
    from splittracer.errors import UserCodeError
    from splittracer.manifest import check_user_code

    tail = _manifest(tmp_path, FLEET.replace("stage: 1", "stage: 1, batch: {max: 8, wait: 5ms}"))
    cloud = resolve_run(tail).participants[-1]
    assert (cloud.workers, cloud.batch_max, cloud.batch_wait_s) == (8, 8, pytest.approx(0.005))
    head = _manifest(tmp_path, FLEET.replace("replicas: 3", "replicas: 3, batch: {max: 2}"))
    with pytest.raises(UserCodeError, match="asks for 2 workers") as info:
        check_user_code(head, tmp_path)
    assert "participants.camera.batch" in str(info.value) or "batch" in info.value.message


def test_devices_put_one_replica_on_each(tmp_path: Path) -> None:
    text = FLEET.replace("replicas: 3}", "devices: [pi1, pi2, pi3]}")
    run = resolve_run(_manifest(tmp_path, text))
    cameras = [(p.name, p.device) for p in run.participants if p.group == "camera"]
    assert cameras == [("camera-0", "pi1"), ("camera-1", "pi2"), ("camera-2", "pi3")]
    assert len(run.playbook) == 3


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ("devices: [pi1, pi2], device: pi9}", "not both"),
        ("devices: [pi1, pi2], replicas: 3}", "replicas: 3 but 2 devices"),
    ],
)
def test_devices_and_their_conflicts_are_located(tmp_path: Path, fleet: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _manifest(tmp_path, FLEET.replace("replicas: 3}", fleet))
    assert info.value.line == 4


def test_a_fleets_links_are_no_chain() -> None:
    from splittracer.report.runs import chain_links
    from splittracer.report.summary import Hop, Quantiles, SplitRow

    def row(*links: tuple[str, str]) -> SplitRow:
        q = Quantiles(1.0, 1.0, 1.0)
        hops = tuple(Hop(a, b, q, 10, 10) for a, b in links)
        return SplitRow(13, 4, q, q, q, q, (q, q), 0.0, 10, 10, (13,), hops)

    assert chain_links([row(("camera-0", "edge"), ("camera-1", "edge"))]) == []
    assert chain_links([row(("phone", "edge"), ("edge", "cloud"))]) == [("phone", "edge"), ("edge", "cloud")]
