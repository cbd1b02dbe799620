"""Measurement: spans and metrics recorded on participants, and the results store."""

from .record import (
    RECORD_VERSION,
    ClockRecord,
    ControllerHost,
    EnergySensors,
    ParticipantRecord,
    RunProvenance,
    RunRecord,
)
from .schema import SCHEMA_VERSION
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
from .store import ResultsStore, RunInfo, RunStatus

__all__ = [
    "RECORD_VERSION",
    "SCHEMA_VERSION",
    "SPAN_KINDS",
    "AttrValue",
    "Attrs",
    "ClockRecord",
    "ControllerHost",
    "EnergySensors",
    "Metric",
    "OpenSpan",
    "ParticipantRecord",
    "ResultsStore",
    "RunInfo",
    "RunProvenance",
    "RunRecord",
    "RunStatus",
    "Span",
    "SpanRecorder",
    "decode_metrics",
    "decode_spans",
    "encode_metrics",
    "encode_spans",
]
