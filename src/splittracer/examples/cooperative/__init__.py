"""Cooperative inference across different models, each participant running its own ``model:``.

``fusion.yaml``: two sensors each run their own small model and send what it
outputs to a hub, whose third model fuses them (a smart-home hub).
``pipeline.yaml``: a phone runs model A whole and sends its output to the
cloud, which runs model B on it (speech to text on the phone, translation in
the cloud). The models (``models.py``) are tiny and randomly initialised.
"""
