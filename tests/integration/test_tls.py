"""Links are mutual TLS: only holders of this run's certificates get in."""

from __future__ import annotations

import datetime
import ssl

import grpc
import pytest

from splittracer.deploy.local import LocalDeployer
from splittracer.errors import PeerError
from splittracer.participant.delivery import prepare_task
from splittracer.tasks import Task
from splittracer.wire.datalink import SocketLink, client_context
from splittracer.wire.grpc_path import open_channel
from splittracer.wire.messages import ParticipantInfo, decoder, method
from splittracer.wire.tls import CONTROLLER, VALIDITY, issue_run_certificates


@pytest.fixture
def participant():
    bundles = issue_run_certificates("run-a", ["cloud"])
    deployment = LocalDeployer().start("cloud", bundles["cloud"])
    yield deployment, bundles
    deployment.stop()


def hello(channel: grpc.Channel) -> ParticipantInfo:
    raw = channel.unary_unary(method("Hello"))(b"", timeout=10)
    return decoder(ParticipantInfo).decode(raw)


def test_holder_of_the_runs_certificate_is_served(participant):
    deployment, bundles = participant
    with open_channel(deployment.address, "cloud", bundles[CONTROLLER]) as channel:
        assert hello(channel).pid == deployment.pid


def test_certificate_of_another_run_is_refused(participant):
    deployment, _ = participant
    stranger = issue_run_certificates("run-b", ["cloud"])[CONTROLLER]
    with open_channel(deployment.address, "cloud", stranger) as channel, pytest.raises(grpc.RpcError) as info:
        hello(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_certificates_past_their_validity_are_refused():
    """Credentials of a run issued longer ago than they are valid for (e.g. copied from an old run)."""
    issued = datetime.datetime.now(datetime.timezone.utc) - VALIDITY - datetime.timedelta(hours=1)
    expired = issue_run_certificates("run-old", ["cloud"], now=issued)
    deployment = LocalDeployer().start("cloud", expired["cloud"])
    try:
        channel = open_channel(deployment.address, "cloud", expired[CONTROLLER])
        with channel, pytest.raises(grpc.RpcError) as info:
            hello(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        deployment.stop()


def test_plaintext_is_refused(participant):
    deployment, _ = participant
    with grpc.insecure_channel(deployment.address) as channel, pytest.raises(grpc.RpcError) as info:
        hello(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_secrets_are_private_and_removed(participant, tmp_path):
    deployment, _ = participant
    key = deployment._secrets / "key.pem"
    assert key.stat().st_mode & 0o077 == 0
    deployment.stop()
    assert not deployment._secrets.exists()


class Stray(Task):
    """A task type the participant process has never heard of."""

    note: str


def test_the_data_port_serves_only_holders_of_the_runs_certificate(participant):
    deployment, bundles = participant
    with open_channel(deployment.address, "cloud", bundles[CONTROLLER]) as channel:
        port = hello(channel).data_port
    assert port > 0
    address = ("127.0.0.1", port)
    link = SocketLink("cloud", address, client_context(bundles[CONTROLLER]))
    for _ in range(2):  # an unknown task is an error answer; the connection stays usable
        reply, frame = link.exchange(prepare_task(Stray(note="hi"), sender="x", sender_stage=0))
        assert not reply.ok and "unknown task type 'Stray'" in reply.error and frame is None
    with pytest.raises(PeerError, match=r"'cloud' failed on Stray: .*unknown task type 'Stray'"):
        link.send(prepare_task(Stray(note="hi"), sender="x", sender_stage=0))
    link.close()
    stranger = SocketLink(
        "cloud", address, client_context(issue_run_certificates("run-b", ["cloud"])[CONTROLLER])
    )
    with pytest.raises(ssl.SSLError):
        stranger.exchange(prepare_task(Stray(note="hi"), sender="x", sender_stage=0))
