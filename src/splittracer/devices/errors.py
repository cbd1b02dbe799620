"""The kinds of device failure a user must tell apart, each with what to do about it."""

from __future__ import annotations

from ..errors import USER_ERROR, DeviceError

__all__ = [
    "AuthenticationFailed",
    "DeviceError",
    "DeviceNotReady",
    "HostKeyChanged",
    "HostKeyNotTrusted",
    "RemoteCommandFailed",
    "UnknownDevice",
    "Unreachable",
]


class Unreachable(DeviceError):
    """No SSH server answered: wrong address, host down, firewall, or too slow."""

    exit_code = USER_ERROR  # the user fixes the address, the port or the device


class HostKeyChanged(DeviceError):
    """The server's host key differs from the one pinned at pairing."""


class HostKeyNotTrusted(DeviceError):
    """The user did not accept the host key shown on first contact."""

    exit_code = USER_ERROR


class AuthenticationFailed(DeviceError):
    """The server refused every key and, if one was given, the password."""

    exit_code = USER_ERROR


class RemoteCommandFailed(DeviceError):
    """A command on the device exited with a non-zero status."""


class DeviceNotReady(DeviceError):
    """The device lacks what a participant needs (Python 3.10+, torch, the runtime)."""

    exit_code = USER_ERROR  # the hint says what to install


class UnknownDevice(DeviceError):
    """No device of that name is in the registry."""

    exit_code = USER_ERROR
