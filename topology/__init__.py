"""Static agent communication graphs built from text specs (see builders.py)."""

from .builders import (
    TOPOLOGY_NAMES,
    TopologyError,
    build_topology,
    is_dynamic,
    is_sight_range,
    load_edge_list,
    neighbour_map,
    range_radius,
)

__all__ = [
    "TOPOLOGY_NAMES",
    "TopologyError",
    "build_topology",
    "is_dynamic",
    "is_sight_range",
    "load_edge_list",
    "neighbour_map",
    "range_radius",
]
