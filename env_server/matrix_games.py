"""N-player general-sum matrix games: the built-in presets and user payoff files.

A game is given as JSON: action names per player, and one payoff list per joint action, keyed by
the action names joined with commas in player order::

    {"actions": [["C", "D"], ["C", "D"]],
     "payoffs": {"C,C": [10, 10], "C,D": [0, 18], "D,C": [18, 0], "D,D": [2, 2]}}

An optional "name" labels the game. The presets below are written in exactly this format and go
through the same parser, so a user file and a preset can never disagree on what is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np

_TOP_KEYS = ("actions", "payoffs", "name")
_MAX_LISTED = 5  # missing joint actions named in one error message; the rest are counted


class PayoffFileError(ValueError):
    """A game definition (preset, dict or payoff file) is malformed or cannot be found."""


@dataclass(frozen=True)
class MatrixGame:
    """A one-state game: `payoffs[a0, ..., a_{P-1}, i]` is the reward of player i."""

    name: str
    actions: tuple[tuple[str, ...], ...]
    # Arrays do not compare with ==, so equality and hashing use name and actions only.
    payoffs: np.ndarray = field(compare=False)

    def __post_init__(self) -> None:
        # The game is shared by every environment copy; a read-only table keeps it frozen.
        table = np.array(self.payoffs, dtype=np.float32)
        table.setflags(write=False)
        object.__setattr__(self, "payoffs", table)

    @property
    def n_players(self) -> int:
        return len(self.actions)

    @property
    def n_actions(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.actions)

    def label(self, joint: Sequence[int]) -> str:
        """Action names of a joint action in player order, e.g. "C,D"."""
        return ",".join(self.actions[i][int(a)] for i, a in enumerate(joint))

    def rewards(self, joint_actions: np.ndarray) -> np.ndarray:
        """(P, K) action indices of K parallel copies -> (P, K) float32 rewards."""
        joint = np.asarray(joint_actions)
        if joint.ndim != 2 or joint.shape[0] != self.n_players:
            raise ValueError(f"joint_actions must have shape ({self.n_players}, K), got {joint.shape}")
        # One fancy-index gather for all K copies: (K, P) -> (P, K).
        return np.ascontiguousarray(self.payoffs[tuple(joint)].T)

    def global_optimum(self) -> tuple[str, float]:
        """Label and total payoff of the joint action with the largest sum of rewards."""
        total = self.payoffs.sum(axis=-1, dtype=np.float64)
        best = np.unravel_index(int(np.argmax(total)), self.n_actions)
        return self.label(best), float(total[best])

    def pure_nash(self) -> list[str]:
        """Labels of the pure Nash equilibria (no player gains by deviating alone)."""
        stable = np.ones(self.n_actions, dtype=bool)
        for i in range(self.n_players):
            mine = self.payoffs[..., i]
            # Player i is content where its payoff is the best along its own action axis.
            stable &= mine >= mine.max(axis=i, keepdims=True)
        return [self.label(j) for j in np.argwhere(stable)]


def _short(value: object) -> str:
    """repr() cut to a length that keeps an error message on one readable line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_finite_reward(value: object) -> bool:
    """A JSON number that stays finite as float32 (1e300 and 10**400 do not)."""
    # bool is an int subclass, but `true` as a payoff is almost certainly a mistake.
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        with np.errstate(over="ignore"):
            return bool(np.isfinite(np.float32(value)))
    except OverflowError:  # an int too large for any float
        return False


def parse_game(data: object, name: str = "custom", source: str = "") -> MatrixGame:
    """Validate a game in the JSON format (already decoded) and build a MatrixGame.

    `name` is used when the data has no "name"; `source` (a file path) prefixes every error.
    """
    try:
        name = _game_name(data, name)
        actions = _parse_actions(data["actions"])
        payoffs = _parse_payoffs(data["payoffs"], actions)
    except PayoffFileError as e:
        if not source:
            raise
        raise PayoffFileError(f"{source}: {e}") from None
    return MatrixGame(name=name, actions=actions, payoffs=payoffs)


def _game_name(data: object, default: str) -> str:
    """Check the top level of a game (an object with exactly the known keys); its name."""
    if not isinstance(data, dict):
        raise PayoffFileError(f"a game must be a JSON object with 'actions' and 'payoffs', got {type(data).__name__}")
    extra = [k for k in data if k not in _TOP_KEYS]
    if extra:
        raise PayoffFileError(f"unknown top-level key(s) {', '.join(map(_short, extra))} "
                              f"(allowed: {', '.join(_TOP_KEYS)})")
    for key in ("actions", "payoffs"):
        if key not in data:
            raise PayoffFileError(f"missing top-level key '{key}'")
    if "name" not in data:
        return default
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise PayoffFileError(f"'name' must be a non-empty string, got {_short(data['name'])}")
    return data["name"].strip()


def _parse_actions(raw_actions: object) -> tuple[tuple[str, ...], ...]:
    """The "actions" entry: per player, its action names (stripped)."""
    if not isinstance(raw_actions, list) or not raw_actions:
        raise PayoffFileError("'actions' must be a non-empty list with one list of action names per player, "
                              f"got {_short(raw_actions)}")
    return tuple(_player_actions(p, names) for p, names in enumerate(raw_actions))


def _player_actions(p: int, names: object) -> tuple[str, ...]:
    if not isinstance(names, list) or not names:
        raise PayoffFileError(f"player {p} must have a non-empty list of action names, got {_short(names)}")
    seen: list[str] = []
    for a in names:
        if not isinstance(a, str) or not a.strip():
            raise PayoffFileError(f"action names must be non-empty strings, player {p} has {_short(a)}")
        # Keys are split on commas and stripped, so such names could never be matched.
        if "," in a:
            raise PayoffFileError(f"action name {a!r} of player {p} contains a comma")
        if a.strip() in seen:
            raise PayoffFileError(f"duplicate action name {a.strip()!r} for player {p}")
        seen.append(a.strip())
    return tuple(seen)


def _parse_payoffs(raw_payoffs: object, actions: tuple[tuple[str, ...], ...]) -> np.ndarray:
    """The "payoffs" entry as a table [a_0, ..., a_{P-1}, player]: every joint action exactly once."""
    if not isinstance(raw_payoffs, dict):
        raise PayoffFileError("'payoffs' must be an object mapping joint actions like 'A,B' to reward lists, "
                              f"got {_short(raw_payoffs)}")
    n_players = len(actions)
    index = [{a: k for k, a in enumerate(names)} for names in actions]
    table = np.zeros(tuple(len(a) for a in actions) + (n_players,), dtype=np.float32)
    filled: dict[tuple[int, ...], str] = {}
    for key, value in raw_payoffs.items():
        cell = _joint_action(key, actions, index)
        if cell in filled:
            raise PayoffFileError(f"joint action {_label(actions, cell)!r} is given twice "
                                  f"(keys {filled[cell]!r} and {key!r})")
        filled[cell] = key
        _check_payoff(key, value, n_players)
        table[cell] = value
    missing = [c for c in product(*(range(len(a)) for a in actions)) if c not in filled]
    if missing:
        shown = ", ".join(repr(_label(actions, c)) for c in missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise PayoffFileError(f"missing payoffs for {len(missing)} joint action(s): {shown}{more}")
    return table


def _joint_action(key: object, actions: tuple[tuple[str, ...], ...], index: list[dict[str, int]]) -> tuple[int, ...]:
    """A payoff key such as "C, D" -> the action index of each player."""
    if not isinstance(key, str):
        raise PayoffFileError(f"payoff key {_short(key)} must be a string like 'A,B'")
    parts = [part.strip() for part in key.split(",")]
    if len(parts) != len(actions):
        raise PayoffFileError(f"payoff key {key!r} names {len(parts)} action(s), "
                              f"expected {len(actions)} (one per player)")
    for p, part in enumerate(parts):
        if part not in index[p]:
            raise PayoffFileError(f"unknown action {part!r} for player {p} in key {key!r} "
                                  f"(player {p} has {', '.join(actions[p])})")
    return tuple(index[p][part] for p, part in enumerate(parts))


def _check_payoff(key: str, value: object, n_players: int) -> None:
    if not isinstance(value, list) or len(value) != n_players:
        raise PayoffFileError(f"payoff for {key!r} must be a list of {n_players} numbers (one per player), "
                              f"got {_short(value)}")
    for r in value:
        if not _is_finite_reward(r):
            raise PayoffFileError(f"payoff for {key!r} must hold finite numbers, got {_short(r)}")


def _label(actions: tuple[tuple[str, ...], ...], cell: tuple[int, ...]) -> str:
    """Action names of a joint action, joined with commas: "C,D"."""
    return ",".join(actions[p][k] for p, k in enumerate(cell))


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    # json.loads silently keeps the last of two equal keys; a repeated joint action is an error.
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise PayoffFileError(f"key {key!r} appears twice in one JSON object")
        out[key] = value
    return out


def load_payoff_file(path: str | Path) -> MatrixGame:
    """Read a game from a JSON payoff file; its name defaults to the file stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PayoffFileError(f"{path}: payoff file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PayoffFileError(f"{path}: cannot read payoff file ({e})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise PayoffFileError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except PayoffFileError as e:
        raise PayoffFileError(f"{path}: {e}") from None
    return parse_game(data, name=path.stem, source=str(path))


# The paper's three games (reconstructed payoff tables), in the user file format.
PRESETS: dict[str, dict] = {
    # Prisoner's Dilemma: only NE is D,D; the optimum C,C (total 20) is not an NE.
    "pd": {
        "actions": [["C", "D"], ["C", "D"]],
        "payoffs": {"C,C": [10, 10], "C,D": [0, 18], "D,C": [18, 0], "D,D": [2, 2]},
    },
    # Maintain (Bi-AC 'climbing'): NE B,Y and C,Z; the optimum A,X (total 35) is not an NE.
    "maintain": {
        "actions": [["A", "B", "C"], ["X", "Y", "Z"]],
        "payoffs": {
            "A,X": [20, 15], "A,Y": [0, 0], "A,Z": [0, 0],
            "B,X": [30, 0], "B,Y": [10, 5], "B,Z": [0, 0],
            "C,X": [0, 0], "C,Y": [0, 0], "C,Z": [5, 10],
        },
    },
    # Meeting game: Gus, Henry pick Henry's room / classroom / cornfield, Scooter R or F.
    # NE F,F,F (the optimum, total 20), C,C,R and C,C,F.
    "meeting3": {
        "actions": [["R", "C", "F"], ["R", "C", "F"], ["R", "F"]],
        "payoffs": {
            "R,R,R": [1, 1, 6], "R,R,F": [7, 7, 0],
            "R,C,R": [-3, 1, 3], "R,C,F": [3, 1, 0],
            "R,F,R": [-3, 2, 3], "R,F,F": [3, 3, 3],
            "C,R,R": [1, -3, 3], "C,R,F": [1, 3, 0],
            "C,C,R": [5, 5, 0], "C,C,F": [5, 5, 0],
            "C,F,R": [1, 2, 0], "C,F,F": [1, 3, 3],
            "F,R,R": [2, -3, 3], "F,R,F": [3, 3, 3],
            "F,C,R": [2, 1, 0], "F,C,F": [3, 1, 3],
            "F,F,R": [6, 6, 0], "F,F,F": [7, 7, 6],
        },
    },
}


def get_game(spec: str) -> MatrixGame:
    """A preset by name ("pd", "maintain", "meeting3") or a user file as "payoff:PATH"."""
    if spec in PRESETS:
        return parse_game(PRESETS[spec], name=spec, source=f"preset {spec!r}")
    if spec.startswith("payoff:"):
        path = spec[len("payoff:"):]
        if not path:
            raise PayoffFileError("'payoff:' needs a file path, e.g. payoff:games/stag.json")
        return load_payoff_file(path)
    raise PayoffFileError(f"unknown game {spec!r}: choose one of {', '.join(PRESETS)}, or payoff:PATH")
