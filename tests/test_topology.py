import logging
import re

import networkx as nx
import pytest

from drima.topology import (
    TOPOLOGY_NAMES,
    TopologyError,
    build_topology,
    is_dynamic,
    is_sight_range,
    load_edge_list,
    neighbour_map,
)


def degrees(graph: nx.Graph) -> list[int]:
    return [graph.degree(node) for node in sorted(graph.nodes)]


def edge_set(graph: nx.Graph) -> set[frozenset[int]]:
    return {frozenset(edge) for edge in graph.edges}


@pytest.mark.parametrize("spec", ["full", "ring", "line", "star", "grid", "random-regular", "erdos-renyi"])
@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_nodes_are_exactly_agent_ids(spec, n):
    graph = build_topology(spec, n)
    assert sorted(graph.nodes) == list(range(n))
    assert nx.number_of_selfloops(graph) == 0


def test_full():
    assert build_topology("full", 4).number_of_edges() == 6
    assert degrees(build_topology("full", 5)) == [4] * 5


def test_ring():
    assert degrees(build_topology("ring", 6)) == [2] * 6
    assert edge_set(build_topology("ring", 2)) == {frozenset({0, 1})}
    assert build_topology("ring", 1).number_of_edges() == 0
    assert build_topology("ring", 3).number_of_edges() == 3


def test_line():
    graph = build_topology("line", 4)
    assert graph.number_of_edges() == 3
    assert degrees(graph) == [1, 2, 2, 1]


def test_star_hub_is_zero():
    graph = build_topology("star", 5)
    assert degrees(graph) == [4, 1, 1, 1, 1]
    assert edge_set(graph) == {frozenset({0, i}) for i in range(1, 5)}


def test_grid_near_square():
    graph = build_topology("grid", 6)  # 2 rows x 3 cols
    assert graph.number_of_edges() == 7
    assert edge_set(graph) == {frozenset(e) for e in [(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)]}
    assert build_topology("grid", 9).number_of_edges() == 12  # 3x3
    assert build_topology("grid", 7).number_of_edges() == 6  # prime: 1x7 is a line


def test_grid_explicit():
    assert edge_set(build_topology("grid:2x3", 6)) == edge_set(build_topology("grid", 6))
    tall = build_topology("grid:3x2", 6)  # node id = r*cols + c with cols=2
    assert edge_set(tall) == {frozenset(e) for e in [(0, 1), (2, 3), (4, 5), (0, 2), (2, 4), (1, 3), (3, 5)]}


def test_grid_explicit_wrong_size():
    with pytest.raises(TopologyError, match=r"grid:2x3 has 6 cells but there are 5 agents"):
        build_topology("grid:2x3", 5)
    with pytest.raises(TopologyError, match=r"RxC"):
        build_topology("grid:2by3", 6)


@pytest.mark.parametrize("n, expected_degree", [(6, 3), (5, 2), (3, 2), (2, 1), (1, 0)])
def test_random_regular_default_degree(n, expected_degree):
    assert degrees(build_topology("random-regular", n)) == [expected_degree] * n


def test_random_regular_explicit_degree_and_seed():
    graph = build_topology("random-regular:4", 10, seed=7)
    assert degrees(graph) == [4] * 10
    assert edge_set(graph) == edge_set(build_topology("random-regular:4", 10, seed=7))
    # With this many 4-regular graphs on 10 nodes, some seed in 1..5 gives a different one.
    assert any(edge_set(build_topology("random-regular:4", 10, seed=s)) != edge_set(graph) for s in range(1, 6))


@pytest.mark.parametrize(
    "spec, n, message",
    [
        ("random-regular:3", 5, r"n\*D even"),
        ("random-regular:5", 5, r"degree must be in 0\.\.4"),
        ("random-regular:-1", 5, r"degree must be in 0\.\.4"),
        ("random-regular:x", 5, r"degree must be an integer, got 'x'"),
    ],
)
def test_random_regular_errors(spec, n, message):
    with pytest.raises(TopologyError, match=message):
        build_topology(spec, n)


def test_erdos_renyi_determinism_and_p():
    graph = build_topology("erdos-renyi:0.3", 20, seed=3)
    assert edge_set(graph) == edge_set(build_topology("erdos-renyi:0.3", 20, seed=3))
    assert edge_set(graph) != edge_set(build_topology("erdos-renyi:0.3", 20, seed=4))
    assert build_topology("erdos-renyi:1", 6).number_of_edges() == 15
    assert 0 < build_topology("erdos-renyi", 20, seed=0).number_of_edges() < 190


@pytest.mark.parametrize(
    "spec, message",
    [
        ("erdos-renyi:abc", r"probability must be a number, got 'abc'"),
        ("erdos-renyi:1.5", r"probability must be in \[0, 1\]"),
        ("erdos-renyi:-0.1", r"probability must be in \[0, 1\]"),
        ("erdos-renyi:nan", r"probability must be in \[0, 1\]"),
    ],
)
def test_erdos_renyi_errors(spec, message):
    with pytest.raises(TopologyError, match=message):
        build_topology(spec, 5)


def test_load_edge_list_formats(tmp_path):
    path = tmp_path / "edges.txt"
    path.write_text("# header comment\n0 1\n\n1,2\n2 , 3  # trailing comment\n  3\t4\n1 0\n")
    graph = load_edge_list(path, 6)
    assert sorted(graph.nodes) == list(range(6))
    assert edge_set(graph) == {frozenset(e) for e in [(0, 1), (1, 2), (2, 3), (3, 4)]}  # duplicate 1 0 merged


def test_file_spec(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("0,1\n1,2\n2,0\n")
    assert degrees(build_topology(f"file:{path}", 3)) == [2, 2, 2]


@pytest.mark.parametrize(
    "content, message",
    [
        ("0 1\n1 2 3\n", r":2: expected two integer agent ids, got '1 2 3'"),
        ("0 1\n\n1\n", r":3: expected two integer agent ids"),
        ("a b\n", r":1: expected two integer agent ids"),
        ("0 1.5\n", r":1: expected two integer agent ids"),
        ("0 1\n# c\n0 7\n", r":3: unknown node id 7 \(agents are 0\.\.5\)"),
        ("-1 2\n", r":1: unknown node id -1 \(agents are 0\.\.5\)"),
        ("0 1\n2 2\n", r":2: self-loop on agent 2"),
    ],
)
def test_load_edge_list_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(TopologyError, match=rf"^{re.escape(str(path))}{message}"):
        load_edge_list(path, 6)


def test_load_edge_list_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(TopologyError, match=r"nope\.txt: cannot read edge list"):
        load_edge_list(path, 3)
    with pytest.raises(TopologyError, match=r"nope\.txt: cannot read edge list"):
        build_topology(f"file:{path}", 3)


def test_file_spec_without_path():
    with pytest.raises(TopologyError, match=r"'file' needs a path"):
        build_topology("file:", 3)


def test_isolated_agents_warn_once(tmp_path, caplog):
    path = tmp_path / "edges.txt"
    path.write_text("0 1\n1 2\n")
    with caplog.at_level(logging.WARNING, logger="drima.topology"):
        build_topology(f"file:{path}", 5)
    warnings = [r for r in caplog.records if r.name == "drima.topology"]
    assert len(warnings) == 1
    assert "agents [3, 4] have no neighbour" in warnings[0].getMessage()


def test_isolated_agents_warn_for_builders(caplog):
    with caplog.at_level(logging.WARNING, logger="drima.topology"):
        build_topology("erdos-renyi:0", 3)
    assert [r.getMessage() for r in caplog.records] == [
        "agents [0, 1, 2] have no neighbour: they will learn independently"
    ]


def test_connected_topology_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="drima.topology"):
        build_topology("ring", 6)
        build_topology("full", 1)  # a lone agent is not a topology problem
    assert caplog.records == []


def test_neighbour_map():
    graph = build_topology("star", 4)
    graph.add_node(4)  # isolated
    assert neighbour_map(graph) == {0: [1, 2, 3], 1: [0], 2: [0], 3: [0], 4: []}
    assert neighbour_map(build_topology("ring", 5))[0] == [1, 4]


@pytest.mark.parametrize("spec", ["torus", "", "fully"])
def test_unknown_spec_lists_valid_names(spec):
    with pytest.raises(TopologyError, match=r"unknown topology") as info:
        build_topology(spec, 4)
    for name in TOPOLOGY_NAMES:
        assert name in str(info.value)


def test_parameter_on_plain_spec_rejected():
    with pytest.raises(TopologyError, match=r"'ring' takes no parameter"):
        build_topology("ring:3", 4)


@pytest.mark.parametrize("n", [0, -2])
def test_bad_agent_count(n):
    with pytest.raises(TopologyError, match=r"number of agents must be >= 1"):
        build_topology("full", n)


def test_range_specs_are_dynamic():
    assert is_dynamic("range:0.8")
    assert is_dynamic("range:sight")
    assert is_dynamic("range")
    assert not is_dynamic("ring")
    assert not is_dynamic("file:range.txt")
    assert "range" not in TOPOLOGY_NAMES
    with pytest.raises(TopologyError, match=r"dynamic.*environment with positions"):
        build_topology("range:0.8", 4)


def test_topology_names():
    assert TOPOLOGY_NAMES == ("full", "ring", "line", "star", "grid", "random-regular", "erdos-renyi", "file")


def test_range_radius_parses_the_distance_and_names_bad_ones():
    from drima.topology import range_radius

    assert range_radius("range:0.8") == 0.8
    assert range_radius("range:sight") is None and is_sight_range("range:Sight ")  # each unit's sight (SMAX, SC2)
    assert not is_sight_range("range:0.8") and not is_sight_range("file:sight")
    for bad in ("range", "range:", "range:far", "range:-1", "range:0", "range:inf", "ring"):
        with pytest.raises(TopologyError):
            range_radius(bad)
