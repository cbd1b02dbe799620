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
