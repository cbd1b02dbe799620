"""The participant: the process that plays one role in a run (``python -m splittracer.participant``)."""

PORT_PREFIX = "SPLITTRACER_PORT="
"""Starts the line a participant prints once it listens; the port follows (read by its deployer)."""
