"""Done-when of the split engine: every split of every reference model is exact."""

from __future__ import annotations

import pytest

from splittracer.split.load import load_split_model
from splittracer.split.profile import verify_splits

# Smaller inputs than the defaults keep CI fast; splitting does not depend on resolution.
MODELS = [
    ("torchvision:alexnet", (1, 3, 224, 224), "leaf"),
    ("torchvision:vgg16", (1, 3, 64, 64), "leaf"),
    ("torchvision:resnet18", (1, 3, 64, 64), "leaf"),
    ("torchvision:resnet50", (1, 3, 64, 64), "leaf"),
    ("torchvision:mobilenet_v3_small", (1, 3, 64, 64), "leaf"),
    ("torchvision:efficientnet_b0", (1, 3, 64, 64), "leaf"),
    ("ultralytics:yolov8n.yaml", (1, 3, 128, 128), "leaf"),
    ("ultralytics:yolov8n.yaml", (1, 3, 128, 128), "block"),
    # segmentation (OrderedDict output) and a detector (eager: data-dependent post-processing)
    ("torchvision:lraspp_mobilenet_v3_large", (1, 3, 64, 64), "block"),
    ("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", (1, 3, 128, 128), "block"),
    # optical flow: both frames in one tensor, RAFT's iterative refinement inside the graph
    ("torchvision:raft_small", (1, 2, 3, 128, 128), "block"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("source", "shape", "granularity"), MODELS)
def test_every_split_reproduces_the_model(source, shape, granularity):
    loaded = load_split_model(source, input_shape=shape, granularity=granularity)
    checks = verify_splits(loaded.split, loaded.example, tolerance=1e-4)
    assert len(checks) == loaded.split.num_layers + 1
    bad = [(c.index, c.after, c.max_abs_diff) for c in checks if not c.ok]
    assert not bad


@pytest.mark.slow
def test_yolo_blocks_are_numbered_model_layers():
    loaded = load_split_model("ultralytics:yolov8n.yaml", input_shape=(1, 3, 128, 128), granularity="block")
    names = [layer.name for layer in loaded.split.layers]
    assert names == [f"model.{i}" for i in range(23)]
    # YOLO's routes: some cuts carry several tensors (concatenations read earlier layers).
    assert max(len(p.tensors) for p in loaded.split.points) >= 3
