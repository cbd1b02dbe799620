"""Paired devices: the registry, SSH with pinned host keys, pairing, probing and remote setup."""
