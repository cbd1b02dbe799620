"""``split: auto`` and ``split: adaptive`` in a manifest: the planner's inputs, resolved at run start.

For every built-in ``Infer`` task that asks for planned cuts, the controller
reads the route's device profiles (each participant's ``profile:``),
captures the manifest's model once, turns the profiles into per-layer
costs (measured or predicted, as ``splittracer plan`` does) and settles
each hop's bandwidth:

1. the sender's emulated ``uplink``, when its ``limits`` set one;
2. else the task's ``bandwidth`` (one rate for every hop, or one per hop);
3. else it is measured by the first participant before the first inference.

Latencies are the senders' emulated ``latency``; the output travels back
over each receiver's uplink, as in ``plan --check``. Every mistake is a
ConfigError at the manifest's line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..builtin import Infer
from ..config import KeyPath, did_you_mean
from ..errors import ConfigError, SplitTracerError
from ..manifest import Manifest, Participant, find_workspace_root
from ..plan.codecs import CodecQuality, parse_drop
from ..plan.energy import RADIOS, parse_tx_power
from ..plan.online import MEASURE, MODES, PlannerInputs, encode_inputs
from ..plan.profiles import ProfileStore
from ..tasks import Task
from ..units import parse_rate
from ..workspace import open_workspace, profile_store

if TYPE_CHECKING:  # capturing a model (torch) and fitting costs (numpy) happen only when a split is planned
    from ..plan.estimate import LayerCosts
    from ..plan.graph import ModelGraph

__all__ = ["planned_costs", "resolve_planned_splits"]

OBJECTIVES = ("latency", "energy")


def resolve_planned_splits(
    manifest: Manifest, playbook: Sequence[tuple[str, Task]], workspace: Path | None = None
) -> tuple[tuple[str, Task], ...]:
    """``playbook`` (built from ``manifest``, in its order) with planner inputs on every
    ``Infer`` that asks for planned cuts; ConfigError for a mistake, at its line.

    The tasks given are left as they are: a planned ``Infer`` is replaced by a copy
    that carries its inputs.
    """
    # Each head plans with the model it runs (its own ``model:``, else the manifest's).
    resolvers = {name: _Resolver(manifest.as_seen_by(name), workspace) for name in manifest.playbook}
    keys = [("playbook", name, i) for name, entries in manifest.playbook.items() for i in range(len(entries))]
    return tuple(
        (name, resolvers[name].resolve(key, name, task) if isinstance(task, Infer) else task)
        for key, (name, task) in zip(keys, playbook)
    )


@dataclass
class _Resolver:
    manifest: Manifest
    workspace: Path | None

    def resolve(self, key: KeyPath, head: str, task: Infer) -> Infer:
        """``task`` itself when it gives its split; else a copy carrying the planner's inputs."""
        self._check_trace(key, task)
        field = _planned_field(task)
        if field is None:
            if task.max_accuracy_drop is not None or task.accuracy_from is not None:
                raise self._error(
                    (
                        *key,
                        "params",
                        "max_accuracy_drop" if task.max_accuracy_drop is not None else "accuracy_from",
                    ),
                    "max_accuracy_drop and accuracy_from choose a codec with a planned split, "
                    "but this task gives its split",
                    "Write split: auto to plan split and codec together, or give codec: instead.",
                )
            if task.objective != "latency" or task.tx_power is not None:
                raise self._error(
                    (*key, "params", "objective" if task.objective != "latency" else "tx_power"),
                    "objective and tx_power choose planned splits, but this task gives its split",
                    "Write split: auto (or adaptive) to have it planned, or drop them.",
                )
            return task
        self._check_mode(key, field, task)
        route = [
            self._participant(key, head, "next"),
            *(self._participant(key, n, "next") for n in task.next),
        ]
        if task.threshold <= 0:
            raise self._error((*key, "params", "threshold"), "threshold must be above 0", "E.g. 0.25: 25 %.")
        costs = [self._costs(p) for p in route]
        given = self._given(key, task, len(route) - 1)
        bandwidths, sources = zip(
            *(self._bandwidth(key, a, b, g) for a, b, g in zip(route, route[1:], given))
        )
        energy_mj, tx_power = self._energy(key, task, route[0], costs[0], bandwidths[0])
        qualities, max_drop = self._codec_plan(key, task)
        planner = encode_inputs(
            PlannerInputs(
                devices=[c.profile for c in costs],
                methods=[c.method for c in costs],
                costs=[list(c.ms) for c in costs],
                bandwidths_bps=list(bandwidths),
                sources=list(sources),
                latencies_s=[p.limits.latency_s for p in route[:-1]],
                reply_bps=[p.limits.uplink_bps for p in route[1:]],
                reply_latencies_s=[p.limits.latency_s for p in route[1:]],
                threshold=task.threshold,
                objective=task.objective,
                energy_mj=energy_mj,
                tx_power=tx_power,
                codec_qualities=qualities,
                max_drop=max_drop,
            )
        )
        return dataclasses.replace(task, planner=planner)

    # -- checks ---------------------------------------------------------------

    def _check_mode(self, key: KeyPath, field: str, task: Infer) -> None:
        word = getattr(task, field)
        if word not in MODES:
            close = did_you_mean(word, MODES)
            raise self._error(
                (*key, "params", field),
                f"{field} '{word}' is neither a split point nor one of: {', '.join(MODES)}",
                f"{close + ' ' if close else ''}Write {field}: auto (planned once at run start), "
                f"{field}: adaptive (re-planned when the measured bandwidth moves) or a split point.",
            )
        if field == "split" and task.cuts is not None:
            raise self._error((*key, "params", "cuts"), "give split or cuts, not both", None)
        if self.manifest.model is None:
            raise self._error((*key, "params", field), f"{field}: {word} needs the manifest's model", None)

    def _check_trace(self, key: KeyPath, task: Infer) -> None:
        for at, rate in task.uplink_trace:
            try:
                parse_rate(rate)
            except ValueError as exc:
                raise self._error((*key, "params", "uplink_trace"), str(exc), None) from exc
            if at < 0:
                raise self._error(
                    (*key, "params", "uplink_trace"),
                    f"inference {at} is not an index",
                    "Write [[INDEX, RATE], ...] with indices from 0, e.g. [[10, 3g]].",
                )

    def _participant(self, key: KeyPath, name: str, field: str) -> Participant:
        found = self.manifest.participants.get(name)
        if found is None:
            known = ", ".join(self.manifest.participants)
            raise self._error(
                (*key, "params", field), f"no participant named '{name}'", f"Participants: {known}."
            )
        return found

    # -- inputs ---------------------------------------------------------------

    def _costs(self, participant: Participant) -> LayerCosts:
        where = ("participants", participant.name, "profile")
        source = self._model_source
        if participant.profile is None:
            raise self._error(
                where,
                f"participant '{participant.name}' names no device profile, which a planned split needs",
                f"Measure one (e.g. splittracer profile {participant.name} {source}) and add "
                f"'profile: {participant.name}' under participants.{participant.name}.",
            )
        name = participant.profile
        if not self._store.exists(name):
            known = self._store.names()
            listing = f"Known profiles: {', '.join(known)}." if known else "There are none yet."
            raise self._error(
                where,
                f"participant '{participant.name}': no device profile '{name}' in {self._store.directory}",
                " ".join(
                    filter(
                        None,
                        [did_you_mean(name, known), listing, f"Make it: splittracer profile {name} {source}"],
                    )
                ),
            )
        from ..plan.estimate import layer_costs

        try:
            return layer_costs(self._store.load(name), self._graph, self._model_key)
        except SplitTracerError as exc:
            raise self._error(where, f"participant '{participant.name}': {exc.message}", exc.hint) from exc

    def _energy(
        self, key: KeyPath, task: Infer, head: Participant, costs: LayerCosts, first_bps: float
    ) -> tuple[list[float], str]:
        """The first device's per-layer millijoules and its radio, for ``objective: energy``."""
        params = (*key, "params")
        if task.objective == "latency":
            if task.tx_power is not None:
                raise self._error((*params, "tx_power"), "tx_power is used only with objective: energy", None)
            return [], ""
        if task.objective != "energy":
            close = did_you_mean(task.objective, OBJECTIVES)
            raise self._error(
                (*params, "objective"),
                f"objective '{task.objective}' is neither latency nor energy",
                f"{close + ' ' if close else ''}Write objective: latency (the default) or energy.",
            )
        assert head.profile is not None  # _costs refused a participant without one
        from ..plan.estimate import with_energy

        try:
            with_joules = with_energy(costs, self._store.load(head.profile), self._model_key)
        except SplitTracerError as exc:
            raise self._error(("participants", head.name, "profile"), exc.message, exc.hint) from exc
        radio = task.tx_power or (head.limits.uplink if head.limits.uplink.lower() in RADIOS else None)
        if radio is None:
            raise self._error(
                (*params, "tx_power"),
                f"objective: energy needs the radio power of '{head.name}' while it sends",
                "Give tx_power: 1.2W (watts), or 3g, lte or wifi for Huang et al.'s measured uplink "
                "models (the default when the participant's uplink is named so).",
            )
        named = radio.strip().lower() in RADIOS
        if named and math.isinf(first_bps):
            raise self._error(
                (*params, "tx_power"),
                f"the {radio} radio model needs the first hop's rate, but that hop is unlimited",
                "Give the power itself (tx_power: 1.2W), or a bandwidth for the hop.",
            )
        try:  # the text only: a named radio is priced at the rate of each plan
            parse_tx_power(radio, first_bps if named and first_bps > 0 else 1e6)
        except SplitTracerError as exc:
            raise self._error((*params, "tx_power"), exc.message, exc.hint) from exc
        return list(with_joules.energy_mj or ()), radio

    def _codec_plan(self, key: KeyPath, task: Infer) -> tuple[list[tuple[int, str, float, float]], float]:
        """What run ``accuracy_from`` measured of each codec, and the budget; nothing without one."""
        params = (*key, "params")
        if task.max_accuracy_drop is None:
            if task.accuracy_from is not None:
                raise self._error(
                    (*params, "accuracy_from"), "accuracy_from is used only with max_accuracy_drop", None
                )
            return [], 0.0
        try:
            budget = parse_drop(task.max_accuracy_drop)
        except ValueError as exc:
            raise self._error((*params, "max_accuracy_drop"), str(exc), None) from None
        clash = next(
            (
                f
                for f, bad in (
                    ("codec", task.codec is not None),
                    ("dag", task.dag),
                    ("objective", task.objective != "latency"),
                )
                if bad
            ),
            None,
        )
        if clash is not None:
            raise self._error(
                (*params, clash),
                "max_accuracy_drop plans the codec of a prefix split for latency; "
                f"it cannot be used with {clash}",
                "Drop one of them.",
            )
        if task.accuracy_from is None:
            raise self._error(
                (*params, "max_accuracy_drop"),
                "max_accuracy_drop needs accuracy_from: the run that measured the codecs",
                "Run a Sweep with codecs: [none, fp16, int8, ...] first, then write accuracy_from: latest "
                "(or its run id).",
            )
        measured = self._measured_codecs((*params, "accuracy_from"), task.accuracy_from)
        return [(q.split, q.codec, q.wire_ratio, q.drop) for q in measured], budget

    def _measured_codecs(self, key: KeyPath, run: str) -> list[CodecQuality]:
        from ..metrics.store import ResultsStore
        from ..report.accuracy import accuracy_rows, codec_qualities

        root = self._workspace_root
        results = open_workspace(root).results_db if root is not None else None
        if results is None or not results.is_file():
            raise self._error(key, f"accuracy_from: {run}, but this workspace has no stored runs", None)
        with ResultsStore(results) as store:
            try:
                found = store.get_run(run)
            except SplitTracerError as exc:
                raise self._error(key, exc.message, exc.hint) from None
            measured = codec_qualities(accuracy_rows(store.spans(found.id), store.metrics(found.id)))
        layers = found.record.layers
        if layers and self.manifest.model is not None and len(layers) != len(self._graph.layers):
            raise self._error(
                key,
                f"run {found.id} measured a model of {len(layers)} layers, "
                f"this manifest's has {len(self._graph.layers)}",
                "Give the run that swept codecs over this manifest's model.",
            )
        if not measured:
            raise self._error(
                key,
                f"run {found.id} measured no codec against none with predictions to compare",
                "Its playbook needs a Sweep with codecs: [none, ...] on the same model.",
            )
        return measured

    def _given(self, key: KeyPath, task: Infer, hops: int) -> list[float | None]:
        if task.bandwidth is None:
            return [None] * hops
        texts = [task.bandwidth] * hops if isinstance(task.bandwidth, str) else task.bandwidth
        where = (*key, "params", "bandwidth")
        if len(texts) != hops:
            raise self._error(
                where, f"{len(texts)} bandwidths for {hops} hop(s)", "Give one, or one per hop."
            )
        try:
            return [parse_rate(t) for t in texts]
        except ValueError as exc:
            raise self._error(where, str(exc), None) from exc

    def _bandwidth(
        self, key: KeyPath, sender: Participant, receiver: Participant, given: float | None
    ) -> tuple[float, str]:
        uplink = sender.limits.uplink_bps
        if math.isfinite(uplink):
            if given is not None and given != uplink:
                raise self._error(
                    (*key, "params", "bandwidth"),
                    f"the hop {sender.name} -> {receiver.name} is given {given / 1e6:g} Mbit/s, but "
                    f"{sender.name}'s emulated uplink is {sender.limits.uplink}, which transfers will see",
                    f"Drop bandwidth (the emulated uplink is used), or change "
                    f"participants.{sender.name}.limits.uplink.",
                )
            return uplink, "uplink"
        return (given, "given") if given is not None else (MEASURE, "measure")

    @cached_property
    def _store(self) -> ProfileStore:
        return profile_store(self._workspace_root)

    @property
    def _workspace_root(self) -> Path | None:
        root = self.workspace
        if root is None and self.manifest.path is not None:
            root = find_workspace_root(self.manifest.path.parent)
        return root

    @property
    def _model_source(self) -> str:
        return self.manifest.model.source if self.manifest.model else "MODEL"

    @cached_property
    def _captured(self) -> tuple[ModelGraph, tuple[str, tuple[int, ...], str]]:
        from ..plan.graph import granularity_name, model_graph
        from ..split.load import load_split_model

        m = self.manifest.model
        assert m is not None  # _check_mode refused a planned split without a model
        loaded = load_split_model(
            m.source,
            input_shape=tuple(m.input_shape) if m.input_shape else None,
            granularity=m.granularity,
            override=m.override,
        )
        key = (m.source, tuple(loaded.spec.input_shape), granularity_name(loaded.split))
        return model_graph(loaded.split), key

    @property
    def _graph(self) -> ModelGraph:
        return self._captured[0]

    @property
    def _model_key(self) -> tuple[str, tuple[int, ...], str]:
        return self._captured[1]

    def _error(self, key: KeyPath, message: str, hint: str | None) -> ConfigError:
        path = self.manifest.path
        dotted = ".".join(str(k) for k in key)
        return ConfigError(
            message, path=str(path) if path else None, line=self.manifest.line_of(key), key=dotted, hint=hint
        )


def _planned_field(task: Infer) -> str | None:
    """Which of ``split`` and ``cuts`` holds a word instead of split points, if either."""
    if isinstance(task.split, str):
        return "split"
    return "cuts" if isinstance(task.cuts, str) else None


def planned_costs(
    manifest: Manifest, workspace: Path | None, key: KeyPath, names: Sequence[str]
) -> tuple[ModelGraph, list[LayerCosts]]:
    """The model's graph and the per-layer costs of the participants ``names`` (their profiles),
    as planned splits use them; a ConfigError at ``key`` (or the participant's profile) otherwise."""
    resolver = _Resolver(manifest, workspace)
    route = [resolver._participant(key, name, "next") for name in names]
    return resolver._graph, [resolver._costs(p) for p in route]
