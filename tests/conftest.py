"""Shared fixtures: small captured models reused across tests (capture costs seconds)."""

from __future__ import annotations

import os
import shutil
import tempfile

# torch keeps a compiler cache in the system temp folder (created when torch.export is imported,
# in this process and in every participant it starts): the suite keeps it in a folder of its
# own, removed when the session ends.
_TORCH_CACHE = tempfile.mkdtemp(prefix="splittracer-tests-torch-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _TORCH_CACHE

import pytest  # noqa: E402
import torch  # noqa: E402

# Runs in tests spawn their participants: a developer's warm agent must not serve them stale
# state. The agent's own tests turn it back on for themselves.
os.environ.setdefault("SPLITTRACER_AGENT", "off")

# Two-core CI machines: keep torch from oversubscribing when tests run processes side by side.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_TORCH_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def alexnet_split():
    from splittracer.split.load import load_split_model

    return load_split_model("torchvision:alexnet")


@pytest.fixture(scope="session")
def resnet18_split():
    from splittracer.split.load import load_split_model

    return load_split_model("torchvision:resnet18", input_shape=(1, 3, 64, 64))


@pytest.fixture(scope="session")
def yolov8n_leaf_split():
    """YOLOv8n at 64x64, leaf layers: its Detect head's branches make placements that are no prefix."""
    from splittracer.split.load import load_split_model

    return load_split_model("ultralytics:yolov8n.yaml", input_shape=(1, 3, 64, 64))
