"""Pairing: pin a device's host key, make sure a key logs in, probe it, register it.

Trust on first use, shown to the user: the server's host key is fetched
before logging in, its fingerprint shown and accepted (``--trust`` or an
interactive yes), then pinned; every later connection must present exactly
that key. When no key logs in, the password is asked once and used only to
install a key (SplitTracer's own ed25519 key, or ``--key``), as
``ssh-copy-id`` does; the password is never stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh

from ..errors import ConfigError
from .errors import AuthenticationFailed, HostKeyChanged, HostKeyNotTrusted
from .probe import Problem, probe, problems
from .registry import Device, Registry, check_name, fingerprint_of, utcnow
from .ssh import (
    CONNECT_TIMEOUT_S,
    Target,
    connect,
    ensure_pairing_key,
    fetch_host_key,
    pairing_key_path,
    public_key_of,
    quote,
    repin_command,
    run,
)

__all__ = [
    "AskPassword",
    "ConfirmHostKey",
    "PairingOptions",
    "PairingResult",
    "install_key_command",
    "pair",
    "pin_decision",
]

ConfirmHostKey = Callable[[str, str], bool]  # (who, fingerprint) -> accept?
AskPassword = Callable[[str], "str | None"]  # (who) -> password, None to give up


@dataclass(frozen=True)
class PairingOptions:
    """How to decide what pairing cannot decide alone."""

    trust: bool = False  # accept a first-contact host key without asking
    repin: bool = False  # accept a host key that differs from the pinned one
    confirm: ConfirmHostKey | None = None
    password: AskPassword | None = None
    timeout: float = CONNECT_TIMEOUT_S


@dataclass(frozen=True)
class PairingResult:
    """The registered device, and what pairing did."""

    device: Device
    pinned: bool  # a host key was pinned now (first contact or re-pin)
    installed_key: Path | None  # the key installed with the password, if that happened
    problems: list[Problem] = field(default_factory=list)


def pair(
    registry: Registry,
    name: str,
    host: str | None = None,
    *,
    port: int | None = None,
    user: str | None = None,
    key: Path | None = None,
    tags: Sequence[str] = (),
    python: str | None = None,
    listen_host: str | None = None,
    options: PairingOptions | None = None,
) -> PairingResult:
    """Pair (or re-pair) device ``name`` at ``host`` and store it in ``registry``.

    ``python`` names the interpreter to use on the device instead of the
    newest ``python3.X`` on its PATH; ``listen_host`` is where its
    participants listen for peers (default: the address SSH reached).
    These, the tags, and for the same host its port, user and key, are kept
    from an earlier pairing when not given: ``pair(registry, name,
    options=PairingOptions(repin=True))`` re-pins a known device.
    """
    check_name(name)
    options = options or PairingOptions()
    existing = registry.find(name)
    if existing is not None and host in (None, existing.host):
        host, port, user, key = (
            existing.host,
            port or existing.port,
            user or existing.user,
            key or existing.key,
        )
    if host is None:
        raise ConfigError(f"'{name}' is not paired yet: give its address with --host")
    extras = {
        "tags": tuple(tags) or (existing.tags if existing else ()),
        "python": python or (existing.python if existing else None),
        "listen_host": listen_host or (existing.listen_host if existing else None),
        # still on the device unless pairing moved to another host
        "installed_key": existing.installed_key
        if existing and (existing.host, existing.port, existing.user) == (host, port, user)
        else None,
    }
    target = Target(host, port, user, key, None, name)
    device, pinned, installed = asyncio.run(_pair(target, existing, extras, options))
    registry.put(device)
    return PairingResult(device, pinned, installed, problems(device.facts, name) if device.facts else [])


def pin_decision(existing: Device | None, server_key: str, target: Target, options: PairingOptions) -> bool:
    """Whether ``server_key`` is pinned anew (True) or already pinned (False).

    Raises HostKeyChanged for a key that differs from the pinned one without
    ``repin``, and HostKeyNotTrusted when a new key is neither trusted by flag
    nor confirmed by the user.
    """
    fingerprint = fingerprint_of(server_key)
    if existing is not None and existing.fingerprint == fingerprint:
        return False
    if existing is not None and not options.repin:
        raise HostKeyChanged(
            f"the host key is now {fingerprint}, not the {existing.fingerprint} pinned for "
            f"'{existing.name}'; refusing to pair",
            host=target.label,
            hint="If the device was reinstalled or its SSH keys regenerated, check the new fingerprint on "
            f"the device and re-pin: '{repin_command(target)}'.",
        )
    if options.trust or (options.confirm is not None and options.confirm(target.label, fingerprint)):
        return True
    raise HostKeyNotTrusted(
        f"host key {fingerprint} was not accepted",
        host=target.label,
        hint="Compare it with 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' on the device, then pair "
        "again and accept it, or pass --trust in scripts.",
    )


KEY_ADDED = "SPLITTRACER_KEY_ADDED"  # printed by install_key_command when it appended the line


def install_key_command(public_key: str) -> str:
    """Shell that appends ``public_key`` to ~/.ssh/authorized_keys once (dir 700, file 600).

    It prints ``SPLITTRACER_KEY_ADDED`` when it appended the line, so that
    pairing records only a line it added (and ``device rm`` removes only that).
    """
    fields = public_key.split()
    body = fields[1] if len(fields) > 1 else public_key
    keys = '"$HOME/.ssh/authorized_keys"'
    return (
        'umask 077 && mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" && '
        f"touch {keys} && chmod 600 {keys} && "
        f"if ! grep -qF {quote(body)} {keys}; then "
        f'if [ -s {keys} ] && [ -n "$(tail -c 1 {keys})" ]; then echo >> {keys}; fi; '
        f"printf '%s\\n' {quote(public_key.strip())} >> {keys}; echo {KEY_ADDED}; fi"
    )


async def _pair(
    target: Target, existing: Device | None, extras: dict[str, Any], options: PairingOptions
) -> tuple[Device, bool, Path | None]:
    server_key = await fetch_host_key(target, options.timeout)
    pinned = pin_decision(existing, server_key, target, options)
    target = replace(target, host_key=server_key)
    conn, key, installed, line = await _login(target, options)
    async with conn:
        facts = await probe(conn, target, extras["python"])
    if line is not None:
        extras = {**extras, "installed_key": line}
    device = Device(
        name=target.name or "",
        host=target.host,
        port=target.port,
        user=target.user,
        key=key,
        host_key=server_key,
        fingerprint=fingerprint_of(server_key),
        facts=facts,
        last_seen=utcnow(),
        **extras,
    )
    return device, pinned, installed


async def _login(
    target: Target, options: PairingOptions
) -> tuple[asyncssh.SSHClientConnection, Path | None, Path | None, str | None]:
    """A logged-in connection, the key that logs in (None: ssh's defaults), the key installed, if
    any, and the authorized_keys line it added (None when the line was there already)."""
    attempts: list[Path | None] = [target.key] if target.key else [None]
    if not target.key and pairing_key_path().exists():
        attempts.append(pairing_key_path())
    for key in attempts:
        try:
            conn = await connect(target, keys=(key,) if key else (), timeout=options.timeout)
        except AuthenticationFailed:
            continue
        return conn, key, None, None
    password = options.password(target.label) if options.password else None
    if password is None:
        raise AuthenticationFailed(
            "no key was accepted and no password was given",
            host=target.label,
            hint="Run 'splittracer device add' in a terminal to be asked the password once, or pass "
            "--password-stdin / --password-env VAR; SplitTracer then installs its own key on the device.",
        )
    key = target.key or ensure_pairing_key()
    line = public_key_of(key).strip()
    async with await connect(target, password=password, timeout=options.timeout) as conn:
        done = await run(conn, target, install_key_command(line), label="install the key in ~/.ssh")
    added = line if KEY_ADDED in done.stdout.split() else None
    conn = await connect(target, keys=(key,), timeout=options.timeout)
    return conn, key, key if added else None, added
