"""Where a mistake sits in a manifest: file, line and key path, and a hint naming what exists."""

from __future__ import annotations

import dataclasses
import typing

from ..config import KeyPath, LocatedYaml, did_you_mean
from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a playbook entry sits in its manifest, for errors raised when it is built."""

    source: LocatedYaml | None
    key: KeyPath


def error_at_key(source: LocatedYaml, key: KeyPath, message: str, hint: str | None) -> ConfigError:
    """A ConfigError at ``key`` of ``source``, with its file and line."""
    return ConfigError(message, path=source.path, line=source.line_of(key), key=dotted(key), hint=hint)


def located_error(where: Where, suffix: KeyPath, message: str, hint: str | None) -> ConfigError:
    """A ConfigError at ``suffix`` under a playbook entry's ``where``."""
    if where.source is None:
        return ConfigError(message, key=dotted((*where.key, *suffix)), hint=hint)
    return error_at_key(where.source, (*where.key, *suffix), message, hint)


def unknown_hint(word: str, known: typing.Iterable[str], label: str) -> str:
    """What exists, with the closest match to ``word`` first."""
    names = sorted(known)
    close = did_you_mean(word, names)
    listing = f"{label}: {', '.join(names)}." if names else f"{label}: none."
    return f"{close} {listing}" if close else listing


def dotted(key: KeyPath) -> str:
    """``('a', 0, 'b')`` as ``a.0.b``, the form errors show."""
    return ".".join(str(part) for part in key)
