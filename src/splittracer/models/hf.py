"""Hugging Face ``transformers`` models built from a config: random weights, nothing downloaded.

A source names a config's model type and the sizes to give it::

    transformers:bert?hidden_size=64&num_hidden_layers=2&num_attention_heads=2&intermediate_size=128
    transformers:gpt2?n_embd=64&n_layer=2&n_head=2&task=causal-lm&seq=32

Every ``key=value`` goes to the config (``AutoConfig.for_model``) except
``seq`` (the sequence length of the synthetic input, default 16) and
``task`` (``base``: the bare model, its last hidden state out;
``causal-lm``: the language-model head, logits out). The input is a batch of
token ids drawn below the config's ``vocab_size``; the attention mask and
position ids are made inside the model, so they are part of the captured
graph and cross a cut only where a later block reads them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError

TASKS = ("base", "causal-lm")


class TokenModel(nn.Module):
    """A transformers model as a module of one tensor of token ids, returning one tensor."""

    input_vocab: int  # token ids of the synthetic inputs are drawn below it

    def __init__(self, model: nn.Module, vocab: int) -> None:
        super().__init__()
        self.model = model
        self.input_vocab = vocab

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states (``base``) or logits (``causal-lm``) for ``input_ids``."""
        output = self.model(input_ids=input_ids, use_cache=False, return_dict=True)
        logits = getattr(output, "logits", None)
        result = logits if logits is not None else output.last_hidden_state
        assert isinstance(result, torch.Tensor)
        return result


def build_from_config(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The model (its ``input_vocab``: token ids are drawn below it) and its input shape."""
    try:
        import transformers
    except ImportError as exc:
        raise ModelError(
            "transformers models need the optional 'transformers' package",
            hint="Install it with: pip install 'splittracer[transformers]'",
        ) from exc
    model_type, _sep, query = name.partition("?")
    options = _options(query, name)
    seq = int(options.pop("seq", 16))
    task = str(options.pop("task", "base"))
    if task not in TASKS:
        raise ModelError(f"task '{task}' in '{name}' is not one of {', '.join(TASKS)}")
    config = _config(transformers, model_type, options)
    auto = transformers.AutoModelForCausalLM if task == "causal-lm" else transformers.AutoModel
    try:
        model = auto.from_config(config)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ModelError(f"cannot build a {task} model for '{model_type}': {exc}") from exc
    return TokenModel(model, int(config.vocab_size)), (1, seq)


def _config(transformers: Any, model_type: str, options: dict[str, Any]) -> Any:
    try:
        config = transformers.AutoConfig.for_model(model_type, **options)
    except ValueError as exc:
        known = sorted(transformers.CONFIG_MAPPING.keys())
        from . import _did_you_mean

        raise ModelError(
            f"transformers has no model type '{model_type}'", hint=_did_you_mean(model_type, known)
        ) from exc
    default = transformers.AutoConfig.for_model(model_type)  # a config keeps any key: compare with its own
    unknown = [key for key in options if not hasattr(default, key)]
    if unknown:
        raise ModelError(
            f"the {model_type} config has no setting '{unknown[0]}'",
            hint="Name fields of its config class, e.g. hidden_size or num_hidden_layers.",
        )
    config._attn_implementation = "eager"  # the same arithmetic everywhere; sdpa picks kernels by device
    return config


def _options(query: str, name: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ModelError(
                f"'{item}' in '{name}' is not key=value",
                hint="Write transformers:bert?hidden_size=64&num_hidden_layers=2.",
            )
        options[key] = _value(text)
    return options


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
