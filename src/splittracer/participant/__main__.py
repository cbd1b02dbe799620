"""``python -m splittracer.participant``: serve one participant of a run.

Prints ``SPLITTRACER_PORT=<port>`` on its own line once it listens, so the
deployer that started it (a local subprocess or an SSH session) learns
where to connect; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from .runtime import Participant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splittracer.participant", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    args = parser.parse_args(argv)
    participant = Participant()
    port = participant.start(args.host, args.port)
    if port == 0:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}\n")
        return 1
    sys.stdout.write(f"SPLITTRACER_PORT={port}\n")
    sys.stdout.flush()
    participant.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
