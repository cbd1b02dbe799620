"""``python -m splittracer.participant``: serve one participant of a run.

Prints ``SPLITTRACER_PORT=<port>`` on its own line once it listens, so the
deployer that started it (a local subprocess or an SSH session) learns
where to connect; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runtime import Participant
from .tls import TlsBundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splittracer.participant", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--tls-dir", type=Path, help="ca.pem, cert.pem and key.pem of this run")
    parser.add_argument("--insecure", action="store_true", help="serve without TLS (development only)")
    args = parser.parse_args(argv)
    if args.tls_dir is None and not args.insecure:
        parser.error("--tls-dir is required (or --insecure for development)")
    tls = TlsBundle.read(args.tls_dir, "") if args.tls_dir else None
    participant = Participant(tls)
    port = participant.start(args.host, args.port)
    if port == 0:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}\n")
        return 1
    sys.stdout.write(f"SPLITTRACER_PORT={port}\n")
    sys.stdout.flush()
    participant.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
