"""``python -m splittracer`` runs the command line."""

from .cli import run

run()
