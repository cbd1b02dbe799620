"""``python -m splittracer.participant``: serve one participant of a run.

Prints ``SPLITTRACER_PORT=<port>`` on its own line once it listens, so the
deployer that started it (a local subprocess or an SSH session) learns
where to connect; everything else goes to stderr.

:func:`serve` is the same thing without the command line: the warm agent
(:mod:`splittracer.deploy.agent_server`) calls it in each process it forks,
and reports the port over its socket instead of stdout.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from ..wire.tls import TlsBundle
from . import PORT_PREFIX
from .runtime import Participant


def _print_port(port: int) -> None:
    sys.stdout.write(f"{PORT_PREFIX}{port}\n")
    sys.stdout.flush()


def serve(
    host: str,
    port: int,
    tls_dir: Path | None,
    announce: Callable[[int], None] = _print_port,
    *,
    scratch: bool = False,
) -> int:
    """Serve one participant until it is shut down; returns the process's exit status.

    ``tls_dir`` holds the run's ``ca.pem``, ``cert.pem`` and ``key.pem``
    (None: plaintext, for development). ``announce`` is called with the
    bound port once the participant listens. ``scratch``: ``tls_dir`` is a
    scratch folder of the controller's, removed by the controller when the
    participant stops; if the controller dies first, the participant removes
    it as it exits, so no run's private key is left in the temp folder.
    """
    tls = TlsBundle.read(tls_dir, "") if tls_dir else None
    on_orphaned = functools.partial(shutil.rmtree, tls_dir, True) if scratch and tls_dir else None
    participant = Participant(tls, on_orphaned=on_orphaned)
    bound = participant.start(host, port)
    if bound == 0:
        sys.stderr.write(f"cannot listen on {host}:{port}\n")
        return 1
    announce(bound)
    participant.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m splittracer.participant", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--tls-dir", type=Path, help="ca.pem, cert.pem and key.pem of this run")
    parser.add_argument(
        "--scratch", action="store_true", help="--tls-dir is the controller's scratch folder (see serve)"
    )
    parser.add_argument("--insecure", action="store_true", help="serve without TLS (development only)")
    args = parser.parse_args(argv)
    if args.tls_dir is None and not args.insecure:
        parser.error("--tls-dir is required (or --insecure for development)")
    return serve(args.host, args.port, args.tls_dir, scratch=args.scratch)


if __name__ == "__main__":
    raise SystemExit(main())
