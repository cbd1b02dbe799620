"""Links are mutual TLS: only holders of this run's certificates get in."""

from __future__ import annotations

import grpc
import pytest

from splittracer.controller.deploy import LocalDeployer
from splittracer.participant.messages import ParticipantInfo, decoder, method
from splittracer.participant.runtime import open_channel
from splittracer.participant.tls import CONTROLLER, issue_run_certificates


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
        assert hello(channel).pid == deployment.process.pid


def test_certificate_of_another_run_is_refused(participant):
    deployment, _ = participant
    stranger = issue_run_certificates("run-b", ["cloud"])[CONTROLLER]
    with open_channel(deployment.address, "cloud", stranger) as channel, pytest.raises(grpc.RpcError) as info:
        hello(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


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
