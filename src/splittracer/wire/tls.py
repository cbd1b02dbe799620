"""Mutual TLS for every link of a run: a per-run authority and one certificate each.

At the start of a run the controller makes a throw-away certificate
authority and signs one certificate for each participant (its name is the
certificate's DNS name) and one for itself. Each participant gets only its
own key, its certificate and the authority's certificate; it serves TLS and
demands a client certificate signed by the same authority, so a process
without this run's certificate cannot talk to it — not the controller of
another run, not a stray peer. Keys are EC P-256 (fast to make and to
handshake) and certificates expire after two days.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CONTROLLER = "controller"
VALIDITY = datetime.timedelta(days=30)
"""How long a run's certificates are valid. Every run has an authority of its own, so this only has
to outlast the longest run: a link reconnecting after it would be refused."""
FILES = ("ca.pem", "cert.pem", "key.pem")


@dataclass(frozen=True)
class TlsBundle:
    """What one party of a run holds: the authority's certificate, its own certificate and key."""

    name: str
    ca: bytes
    cert: bytes
    key: bytes

    def write(self, directory: Path) -> Path:
        """Write the three PEM files (key readable by the owner only); returns ``directory``."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for filename, data in zip(FILES, (self.ca, self.cert, self.key)):
            path = directory / filename
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return directory

    @classmethod
    def read(cls, directory: Path, name: str) -> TlsBundle:
        """Read a bundle written by :meth:`write`."""
        ca, cert, key = ((directory / f).read_bytes() for f in FILES)
        return cls(name, ca, cert, key)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve TLS and require a client certificate from the same authority."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel(self, address: str, peer: str, options: list[tuple[str, object]]) -> grpc.Channel:
        """A channel to ``peer`` at ``address``, checking it holds the certificate named ``peer``."""
        credentials = grpc.ssl_channel_credentials(self.ca, self.key, self.cert)
        return grpc.secure_channel(
            address, credentials, options=[*options, ("grpc.ssl_target_name_override", peer)]
        )


def issue_run_certificates(
    run_id: str, names: list[str], *, now: datetime.datetime | None = None
) -> dict[str, TlsBundle]:
    """A fresh authority for ``run_id`` and a bundle for each name and for the controller.

    Everything is valid from five minutes before ``now`` (default: the current
    time, in UTC) for :data:`VALIDITY`.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"splittracer run {run_id}")])
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_cert = (
        _builder(subject, subject, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    return {name: _issue(name, ca_key, ca_cert.subject, ca_pem, now) for name in [*names, CONTROLLER]}


def _issue(
    name: str, ca_key: ec.EllipticCurvePrivateKey, issuer: x509.Name, ca_pem: bytes, now: datetime.datetime
) -> TlsBundle:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, issuer, key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return TlsBundle(name, ca_pem, cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )
