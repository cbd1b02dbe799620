"""The planner's view of a captured model: layers, values and their consumers."""

from __future__ import annotations

from collections import Counter

from splittracer.plan.graph import model_graph


def test_alexnet_is_a_chain(alexnet_split):
    sm = alexnet_split.split
    graph = model_graph(sm)
    assert graph.num_layers == 21 and [layer.name for layer in graph.layers] == [x.name for x in sm.layers]
    assert graph.split_bytes == tuple(p.bytes for p in sm.points)
    assert graph.output_bytes == 4000
    assert all(len(v.consumers) == 1 and v.consumers[0] == v.layer + 1 for v in graph.values)
    kinds = Counter(u.kind for layer in graph.layers for u in layer.units)
    assert kinds["conv"] == 5 and kinds["linear"] == 3 and kinds["pooling"] == 4 and kinds["activation"] == 7


def test_resnet18_values_feed_several_layers(resnet18_split):
    graph = model_graph(resnet18_split.split)
    shared = [v for v in graph.values if len(v.consumers) > 1]
    assert shared, "a residual block's input is read by its first conv and by the add"
    assert all(v.bytes for v in graph.values)
    assert graph.values[-1].consumers == (graph.num_layers + 1,)  # the output


def test_graph_values_is_the_split_engines_public_view(alexnet_split):
    sm = alexnet_split.split
    values = sm.graph_values()
    assert values.layers.count == sm.num_layers
    conv = next(n for n in values.layers.nodes if values.layers.layer_of[n] == 1)
    assert values.tensors[conv].shape == sm.layers[0].output.shape
    assert values.macs[conv] == sm.layers[0].macs and sm.layers[0].macs > 0
    crossing = [values.tensors[v] for v in values.layers.live[5]]
    assert sum(t.bytes for t in crossing) == sm.points[5].bytes
