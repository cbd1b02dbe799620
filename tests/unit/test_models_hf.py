"""Transformers built from a config (no download), split between their blocks with the mask crossing."""

from __future__ import annotations

import re

import pytest
import torch

from splittracer.errors import ModelError
from splittracer.split.load import load_split_model
from splittracer.split.profile import verify_splits

pytest.importorskip("transformers")

BERT = (
    "transformers:bert?hidden_size=64&num_hidden_layers=2&num_attention_heads=2"
    "&intermediate_size=128&vocab_size=1000"
)
GPT2 = "transformers:gpt2?n_embd=64&n_layer=2&n_head=2&vocab_size=1000&task=causal-lm&seq=12"


@pytest.mark.parametrize(
    ("source", "blocks", "mask"),
    [
        (BERT, ["model.encoder.layer.0", "model.encoder.layer.1"], (1, 1, 16, 16)),
        (GPT2, ["model.transformer.h.0", "model.transformer.h.1"], (1, 1, 12, 12)),
    ],
)
def test_encoder_and_decoder_split_between_blocks(source, blocks, mask):
    loaded = load_split_model(source, granularity="depth=4")
    sm, x = loaded.split, loaded.example
    assert x.dtype == torch.int64 and int(x.max()) < 1000  # token ids, not noise
    names = [layer.name for layer in sm.layers]
    between = names.index(blocks[0]) + 1  # after the first block, before the second
    crossing = [t.shape for t in sm.points[between].tensors]
    assert mask in crossing and len(crossing) == 2  # the hidden states and the attention mask
    checks = verify_splits(sm, x, splits=[0, between - 1, between, sm.num_layers])
    assert all(c.ok and c.max_abs_diff == 0 for c in checks), checks


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("transformers:bertt?hidden_size=64", "no model type 'bertt'"),
        ("transformers:bert?hidden_sise=64", "no setting 'hidden_sise'"),
        ("transformers:bert?hidden_size", "'hidden_size' in 'bert?hidden_size' is not key=value"),
        ("transformers:gpt2?task=translate", "task 'translate'"),
    ],
)
def test_config_mistakes_are_model_errors(source, message):
    with pytest.raises(ModelError, match=re.escape(message)):
        load_split_model(source)
