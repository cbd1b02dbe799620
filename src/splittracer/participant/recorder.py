"""A span recorder that also takes spans timed elsewhere, with trace tags."""

from __future__ import annotations

from ..metrics.spans import Attrs, Span, SpanRecorder
from ..wire.envelope import Tags


class TaggedRecorder(SpanRecorder):
    """:class:`SpanRecorder` plus :meth:`add_span` for spans built from timestamps."""

    def add_span(
        self,
        kind: str,
        start_ns: int,
        end_ns: int,
        tags: Tags,
        *,
        stage: int | None = None,
        bytes_raw: int = 0,
        bytes_wire: int = 0,
        attrs: Attrs | None = None,
    ) -> None:
        """Record a span of ``kind`` from two clock readings, tagged with ``tags``."""
        merged: Attrs = {"warmup": True} if tags.warmup else {}
        merged.update(attrs or {})
        self.add(
            Span(
                run_id=self.run_id,
                participant=self.participant,
                stage=self.stage if stage is None else stage,
                kind=kind,
                inference=tags.inference,
                split=tags.split,
                start_ns=start_ns,
                end_ns=end_ns,
                bytes_raw=bytes_raw,
                bytes_wire=bytes_wire,
                attrs=merged,
            )
        )
