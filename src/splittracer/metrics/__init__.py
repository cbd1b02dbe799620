"""Measurement: spans and metrics recorded on participants, and the results store."""

from .spans import (
    SPAN_KINDS,
    Attrs,
    AttrValue,
    Metric,
    OpenSpan,
    Span,
    SpanRecorder,
    decode_metrics,
    decode_spans,
    encode_metrics,
    encode_spans,
)
from .store import SCHEMA_VERSION, ResultsStore, RunInfo, RunStatus

__all__ = [
    "SCHEMA_VERSION",
    "SPAN_KINDS",
    "AttrValue",
    "Attrs",
    "Metric",
    "OpenSpan",
    "ResultsStore",
    "RunInfo",
    "RunStatus",
    "Span",
    "SpanRecorder",
    "decode_metrics",
    "decode_spans",
    "encode_metrics",
    "encode_spans",
]
