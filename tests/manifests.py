"""Experiment manifests shared by the tests and the benchmarks (``bench/_lab.py`` imports them).

Plain text, no imports: a benchmark and a test that measure or check the same experiment
build it here, so the two cannot drift apart.
"""

from __future__ import annotations


def alexnet_pair(name: str, task: str, params: str) -> str:
    """AlexNet between two local participants, ``phone`` (head) and ``cloud`` (tail), one torch
    thread each; ``phone``'s playbook is the one ``task`` with ``params`` (a YAML flow mapping)."""
    return f"""
name: {name}
model: {{source: torchvision:alexnet}}
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1}}}}
  cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 1}}}}
playbook:
  phone:
    - task: {task}
      params: {params}
"""


def pool5(count: int, name: str = "pool5") -> str:
    """``count`` inferences of AlexNet split after pool5 (split 13), then the run finishes."""
    return alexnet_pair(name, "Infer", f"{{next: [cloud], split: 13, count: {count}, finish: true}}")


def fan_in(
    cameras: str, *, name: str = "fan-in", role: str = "splittracer.builtin:SplitHead", edge: str = ""
) -> str:
    """Clients sharing one server: ``camera`` (``role``, by default AlexNet's head on a 64x64
    input) placed as ``cameras`` says (``replicas: 4``, ``devices: [a, b]``), each sending 10
    inferences split after pool5 to the one ``edge`` (the tail); ``edge`` adds keys of its own
    (``device: local``, ``workers: 2``)."""
    edge_keys = f"{edge}, " if edge else ""
    return f"""
name: {name}
model: {{source: torchvision:alexnet, input_shape: [1, 3, 64, 64]}}
participants:
  camera: {{role: "{role}", {cameras}, limits: {{threads: 1}}}}
  edge: {{{edge_keys}role: "splittracer.builtin:SplitTail", limits: {{threads: 1}}}}
playbook:
  camera:
    - task: Infer
      params: {{split: 13, next: [edge], count: 10, finish: true}}
"""
