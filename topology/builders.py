"""Build the static communication graph between agents from a short text spec.

Nodes are always exactly the agent ids 0..n-1, so callers can index agents by node.
Dynamic ``range`` topologies depend on agent positions and are built elsewhere.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import networkx as nx

log = logging.getLogger("drima.topology")

TOPOLOGY_NAMES: tuple[str, ...] = (
    "full",
    "ring",
    "line",
    "star",
    "grid",
    "random-regular",
    "erdos-renyi",
    "file",
)

_DYNAMIC_NAME = "range"
_VALID_SPECS = ("full, ring, line, star, grid, grid:RxC, random-regular[:D], erdos-renyi[:P], file:PATH, "
                "range:... (dynamic)")

# Two ASCII integers separated by a comma or by whitespace (re.ASCII keeps non-ASCII digits out).
_EDGE_LINE = re.compile(r"([+-]?\d+)(?:\s*,\s*|\s+)([+-]?\d+)", re.ASCII)


class TopologyError(ValueError):
    """A topology spec or edge-list file is invalid; the message says what and where."""


def _split(spec: str) -> tuple[str, str | None]:
    """Split ``name[:param]``; only the first colon counts so file paths may contain colons."""
    name, sep, param = spec.strip().partition(":")
    return name.strip().lower(), (param.strip() if sep else None)


def is_dynamic(spec: str) -> bool:
    """True for ``range`` specs, whose edges change with agent positions."""
    return _split(spec)[0] == _DYNAMIC_NAME


def is_sight_range(spec: str) -> bool:
    """True for ``range:sight``: each unit's own sight range (SMAX, SC2) instead of one radius."""
    name, param = _split(spec)
    return name == _DYNAMIC_NAME and (param or "").lower() == "sight"


def range_radius(spec: str) -> float | None:
    """R of ``range:R``: agents within distance R of each other are neighbours at that step.
    None for ``range:sight``: each unit's own sight range (SMAX, SC2), which only the env knows."""
    name, param = _split(spec)
    if name != _DYNAMIC_NAME:
        raise TopologyError(f"topology {spec!r} is not a range topology")
    if is_sight_range(spec):
        return None
    try:
        radius = float(param or "")
    except ValueError:
        raise TopologyError(f"topology {spec!r}: give the communication range as a number, e.g. range:0.8, "
                            "or range:sight") from None
    if not radius > 0 or radius == float("inf"):
        raise TopologyError(f"topology {spec!r}: the range must be a positive finite number")
    return radius


def _graph(n: int, edges: Iterable[tuple[int, int]]) -> nx.Graph:
    # Adding nodes first keeps isolated agents in the graph and the node order 0..n-1.
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges)
    return graph


def _warn_isolated(graph: nx.Graph) -> None:
    # A single agent has nobody to talk to by definition; warning about it is only noise.
    if graph.number_of_nodes() < 2:
        return
    isolated = sorted(node for node in graph.nodes if graph.degree(node) == 0)
    if isolated:
        log.warning("agents %s have no neighbour: they will learn independently", isolated)


def _no_param(name: str, param: str | None) -> None:
    if param is not None:
        raise TopologyError(f"topology {name!r} takes no parameter, got {name}:{param}")


def _ring(n: int) -> list[tuple[int, int]]:
    edges = [(i, i + 1) for i in range(n - 1)]
    # nx.cycle_graph gives a self-loop for n=1 and a double edge for n=2; close the ring only for n>2.
    if n > 2:
        edges.append((n - 1, 0))
    return edges


def _grid(n: int, param: str | None) -> list[tuple[int, int]]:
    if param is None:
        rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
        cols = n // rows
    else:
        match = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", param, re.ASCII)
        if match is None:
            raise TopologyError(f"grid size must look like RxC (e.g. grid:2x3), got {param!r}")
        rows, cols = int(match.group(1)), int(match.group(2))
        if rows * cols != n:
            raise TopologyError(f"grid:{rows}x{cols} has {rows * cols} cells but there are {n} agents")
    edges = []
    for r in range(rows):
        for c in range(cols):
            node = r * cols + c
            if c + 1 < cols:
                edges.append((node, node + 1))
            if r + 1 < rows:
                edges.append((node, node + cols))
    return edges


def _random_regular(n: int, param: str | None, seed: int) -> list[tuple[int, int]]:
    if param is None:
        degree = min(3, n - 1)
        # A d-regular graph needs n*d even; stepping down one degree always fixes that.
        if n * degree % 2:
            degree -= 1
    else:
        try:
            degree = int(param)
        except ValueError:
            raise TopologyError(f"random-regular degree must be an integer, got {param!r}") from None
        if degree < 0 or degree >= n:
            raise TopologyError(f"random-regular degree must be in 0..{n - 1} for {n} agents, got {degree}")
        if n * degree % 2:
            raise TopologyError(f"random-regular needs n*D even, got n={n} D={degree}")
    return list(nx.random_regular_graph(degree, n, seed=seed).edges)


def _erdos_renyi(n: int, param: str | None, seed: int) -> list[tuple[int, int]]:
    if param is None:
        p = 0.5
    else:
        try:
            p = float(param)
        except ValueError:
            raise TopologyError(f"erdos-renyi probability must be a number, got {param!r}") from None
        if not 0.0 <= p <= 1.0:  # also rejects nan
            raise TopologyError(f"erdos-renyi probability must be in [0, 1], got {param}")
    return list(nx.gnp_random_graph(n, p, seed=seed).edges)


# Topologies without a parameter: name -> their edges over agents 0..n-1.
_PLAIN_TOPOLOGIES: dict[str, Callable[[int], list[tuple[int, int]]]] = {
    "full": lambda n: list(nx.complete_graph(n).edges),
    "ring": _ring,
    "line": lambda n: [(i, i + 1) for i in range(n - 1)],
    "star": lambda n: [(0, i) for i in range(1, n)],
}


def build_topology(spec: str, n: int, seed: int = 0) -> nx.Graph:
    """Build the graph named by ``spec`` over agents 0..n-1; ``seed`` drives the random builders."""
    n = _agent_count(n)
    name, param = _split(spec)

    if name == _DYNAMIC_NAME:
        raise TopologyError(
            f"topology {spec!r} is dynamic: range topologies need an environment with positions"
        )
    if name == "file":
        if not param:
            raise TopologyError("topology 'file' needs a path, e.g. file:edges.txt")
        return load_edge_list(param, n)

    graph = _graph(n, _named_edges(spec, name, param, n, seed))
    _warn_isolated(graph)
    return graph


def _agent_count(n: int) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise TopologyError(f"number of agents must be an integer, got {n!r}") from None
    if n < 1:
        raise TopologyError(f"number of agents must be >= 1, got {n}")
    return n


def _named_edges(spec: str, name: str, param: str | None, n: int, seed: int) -> list[tuple[int, int]]:
    """Edges of a built-in static topology (all but file)."""
    if name in _PLAIN_TOPOLOGIES:
        _no_param(name, param)
        return _PLAIN_TOPOLOGIES[name](n)
    if name == "grid":
        return _grid(n, param)
    if name == "random-regular":
        return _random_regular(n, param, seed)
    if name == "erdos-renyi":
        return _erdos_renyi(n, param, seed)
    raise TopologyError(f"unknown topology {spec!r}; valid: {_VALID_SPECS}")


def load_edge_list(path: str | Path, n: int) -> nx.Graph:
    """Read one ``a b`` or ``a,b`` edge per line over agents 0..n-1; ``#`` starts a comment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read edge list: {exc}") from None

    edges = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        match = _EDGE_LINE.fullmatch(line)
        if match is None:
            raise TopologyError(f"{where}: expected two integer agent ids, got {line!r}")
        a, b = int(match.group(1)), int(match.group(2))
        for node in (a, b):
            if not 0 <= node < n:
                raise TopologyError(f"{where}: unknown node id {node} (agents are 0..{n - 1})")
        if a == b:
            raise TopologyError(f"{where}: self-loop on agent {a}")
        edges.append((a, b))  # nx.Graph merges duplicates

    graph = _graph(n, edges)
    _warn_isolated(graph)
    return graph


def neighbour_map(graph: nx.Graph) -> dict[int, list[int]]:
    """Sorted neighbour ids for every node; isolated nodes map to ``[]``."""
    return {node: sorted(graph.neighbors(node)) for node in sorted(graph.nodes)}
