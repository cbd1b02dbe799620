"""Model sources: names, user callables, optional extras and their errors."""

from __future__ import annotations

import builtins

import pytest
import torch

from splittracer.errors import ModelError, UserCodeError
from splittracer.models import example_input, load_model, parse_input_shape


def test_torchvision_by_name_has_default_shape():
    spec = load_model("torchvision:alexnet")
    assert spec.input_shape == (1, 3, 224, 224)
    assert not spec.module.training


def test_unknown_torchvision_model_suggests_close_names():
    with pytest.raises(ModelError) as info:
        load_model("torchvision:resnet19")
    assert "no model named 'resnet19'" in info.value.render()
    assert "resnet18" in info.value.render()


def test_source_without_prefix():
    with pytest.raises(ModelError, match="SOURCE:NAME"):
        load_model("alexnet")


def test_user_callable_and_its_errors():
    spec = load_model("tests.unit.toy_models:chain_of_opaque")
    assert isinstance(spec.module, torch.nn.Module)
    with pytest.raises(UserCodeError, match=r"cannot import module 'no_such_pkg\.models'"):
        load_model("no_such_pkg.models:build")
    with pytest.raises(UserCodeError) as info:
        load_model("tests.unit.toy_models:chain_of_opaq")
    assert "chain_of_opaque" in info.value.render()


def test_missing_optional_extra_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ModelError) as info:
        load_model("timm:resnet18")
    assert "pip install 'splittracer[timm]'" in info.value.render()


def test_ultralytics_yaml_builds_offline():
    spec = load_model("ultralytics:yolov8n.yaml")
    assert spec.input_shape == (1, 3, 640, 640)
    with pytest.raises(ModelError, match="not a model yaml"):
        load_model("ultralytics:yolov8n.pt")


def test_weights_file_is_loaded(tmp_path):
    spec = load_model("torchvision:alexnet")
    state = {k: torch.full_like(v, 0.5) for k, v in spec.module.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    loaded = load_model("torchvision:alexnet", weights=tmp_path / "w.pt")
    assert torch.all(loaded.module.features[0].weight == 0.5)
    with pytest.raises(ModelError, match="does not exist"):
        load_model("torchvision:alexnet", weights=tmp_path / "missing.pt")


@pytest.mark.parametrize(("text", "shape"), [("1,3,224,224", (1, 3, 224, 224)), ("2x3x8x8", (2, 3, 8, 8))])
def test_parse_input_shape(text, shape):
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["", "1,a", "1,0,3", "-1,3"])
def test_parse_input_shape_rejects(text):
    with pytest.raises(ModelError, match="positive integers"):
        parse_input_shape(text)


def test_example_input_is_reproducible():
    assert torch.equal(example_input((1, 3, 4, 4), seed=1), example_input((1, 3, 4, 4), seed=1))
    assert not torch.equal(example_input((1, 3, 4, 4), seed=1), example_input((1, 3, 4, 4), seed=2))


@pytest.fixture
def no_network(monkeypatch):
    """Any download through torch.hub or urllib fails the test."""
    import urllib.request

    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried the network: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse, raising=False)
    return refuse


def test_detector_builds_offline_backbone_weights_too(no_network):
    spec = load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert type(spec.module).__name__ == "FasterRCNN"
    spec = load_model("torchvision:deeplabv3_mobilenet_v3_large")
    assert type(spec.module).__name__ == "DeepLabV3"


def test_video_builder_gets_a_clip_shape(no_network):
    assert load_model("torchvision:r3d_18").input_shape == (1, 3, 16, 112, 112)


def test_optical_flow_takes_both_frames_in_one_tensor(no_network):
    spec = load_model("torchvision:raft_small")
    assert spec.input_shape == (1, 2, 3, 128, 128)
    from torchvision.models.optical_flow import RAFT

    frames = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(0))
    model = spec.module
    with torch.no_grad():
        flows = model(frames)
        plain = RAFT.forward(model, frames[:, 0], frames[:, 1])
    assert [f.shape for f in flows] == [(1, 2, 128, 128)] * 12
    torch.testing.assert_close(flows[-1], plain[-1], rtol=0, atol=0)
    assert {name for name, _m in model.named_children()} >= {"feature_encoder", "update_block"}


def test_a_builder_that_downloads_is_one_clear_error(monkeypatch, no_network):
    import torch.hub
    import torchvision

    def downloading_builder(weights=None):
        torch.hub.download_url_to_file("https://example.invalid/w.pth", "/nonexistent")
        raise AssertionError("not reached")

    downloading_builder.__module__ = "torchvision.models.fake"
    monkeypatch.setattr(torchvision.models, "get_model_builder", lambda name: downloading_builder)
    with pytest.raises(ModelError) as info:
        load_model("torchvision:alexnet")
    text = info.value.render()
    assert "would download https://example.invalid/w.pth" in text
    assert "--weights" in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert torch.hub.download_url_to_file.__name__ == "download_url_to_file"  # restored after the build
