"""The participant: the process that plays one role in a run (``python -m splittracer.participant``)."""
