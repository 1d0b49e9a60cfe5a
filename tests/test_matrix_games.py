import copy
import json
from itertools import product

import numpy as np
import pytest

from drima.env_server.matrix_games import (
    PRESETS,
    MatrixGame,
    PayoffFileError,
    get_game,
    load_payoff_file,
    parse_game,
)

PD = {"actions": [["C", "D"], ["C", "D"]],
      "payoffs": {"C,C": [10, 10], "C,D": [0, 18], "D,C": [18, 0], "D,D": [2, 2]}}


def pd_with(**changes: object) -> dict:
    data = copy.deepcopy(PD)
    data.update(changes)
    return data


# --- presets: the properties of the paper's payoff tables ---------------------------------

def test_presets_parse_with_expected_shapes():
    assert set(PRESETS) == {"pd", "maintain", "meeting3"}
    for spec, shape in [("pd", (2, 2)), ("maintain", (3, 3)), ("meeting3", (3, 3, 2))]:
        game = get_game(spec)
        assert game.name == spec
        assert game.n_actions == shape
        assert game.n_players == len(shape)
        assert game.payoffs.shape == shape + (len(shape),)
        assert game.payoffs.dtype == np.float32


def test_pd_properties():
    game = get_game("pd")
    assert game.pure_nash() == ["D,D"]
    assert game.global_optimum() == ("C,C", 20.0)
    assert game.payoffs[0, 1].tolist() == [0, 18]


def test_maintain_properties():
    game = get_game("maintain")
    assert game.actions == (("A", "B", "C"), ("X", "Y", "Z"))
    assert sorted(game.pure_nash()) == ["B,Y", "C,Z"]
    assert game.global_optimum() == ("A,X", 35.0)
    assert game.payoffs[1, 0].tolist() == [30, 0]  # agent 0 leaves A,X for B,X


def test_meeting3_properties():
    game = get_game("meeting3")
    assert game.actions == (("R", "C", "F"), ("R", "C", "F"), ("R", "F"))
    assert sorted(game.pure_nash()) == ["C,C,F", "C,C,R", "F,F,F"]
    assert game.global_optimum() == ("F,F,F", 20.0)


def test_meeting3_table_matches_the_stated_formula():
    # payoffs.md: student = place value + 4 if with the other student + 1 if he and Scooter are
    # in the cornfield - 6 if he and Scooter are in R; Scooter = 3 x students at his place.
    value = {"R": 3, "C": 1, "F": 2}

    def student(me: str, other: str, scooter: str) -> int:
        return (value[me] + 4 * (me == other) + (me == scooter == "F")
                - 6 * (me == scooter == "R"))

    game = get_game("meeting3")
    for g, h, s in product("RCF", "RCF", "RF"):
        expected = [student(g, h, s), student(h, g, s), 3 * ((g == s) + (h == s))]
        joint = ("RCF".index(g), "RCF".index(h), "RF".index(s))
        assert game.payoffs[joint].tolist() == expected, f"{g},{h},{s}"
    assert len(PRESETS["meeting3"]["payoffs"]) == 18


# --- MatrixGame methods -------------------------------------------------------------------

def test_label():
    assert get_game("pd").label([0, 1]) == "C,D"
    assert get_game("meeting3").label(np.array([2, 1, 0])) == "F,C,R"


def test_rewards_vectorised_over_copies():
    game = get_game("meeting3")
    joint = np.array([[0, 1, 2, 2, 1],
                      [0, 0, 2, 2, 1],
                      [1, 0, 0, 1, 0]])  # R,R,F  C,R,R  F,F,R  F,F,F  C,C,R
    r = game.rewards(joint)
    assert r.dtype == np.float32 and r.shape == (3, 5)
    assert r.T.tolist() == [[7, 7, 0], [1, -3, 3], [6, 6, 0], [7, 7, 6], [5, 5, 0]]


def test_rewards_pd_many_copies():
    game = get_game("pd")
    k = 1000
    joint = np.random.default_rng(0).integers(0, 2, size=(2, k))
    r = game.rewards(joint)
    table = {(0, 0): (10, 10), (0, 1): (0, 18), (1, 0): (18, 0), (1, 1): (2, 2)}
    assert r.shape == (2, k)
    assert all(tuple(r[:, j]) == table[tuple(joint[:, j])] for j in range(k))


def test_rewards_rejects_wrong_player_count():
    with pytest.raises(ValueError, match=r"shape \(2, K\)"):
        get_game("pd").rewards(np.zeros((3, 4), int))


def test_game_is_read_only():
    game = get_game("pd")
    with pytest.raises(ValueError):
        game.payoffs[0, 0, 0] = 99


def test_parse_tolerates_whitespace_and_uses_name():
    data = {"name": "stag", "actions": [["S", "H"], ["S", "H"]],
            "payoffs": {"S, S": [4, 4], " S,H ": [0, 3], "H,S": [3, 0], "H , H": [3, 3]}}
    game = parse_game(data)
    assert game.name == "stag"
    assert sorted(game.pure_nash()) == ["H,H", "S,S"]
    assert parse_game(PD).name == "custom"


def test_single_player_game():
    game = parse_game({"actions": [["a", "b", "c"]], "payoffs": {"a": [1], "b": [5], "c": [2]}})
    assert game.pure_nash() == ["b"]
    assert game.global_optimum() == ("b", 5.0)


# --- files ---------------------------------------------------------------------------------

def test_file_round_trip(tmp_path):
    path = tmp_path / "maintain_copy.json"
    path.write_text(json.dumps(PRESETS["maintain"]))
    game = load_payoff_file(path)
    assert game.name == "maintain_copy"
    assert game.actions == get_game("maintain").actions
    np.testing.assert_array_equal(game.payoffs, get_game("maintain").payoffs)
    via_spec = get_game(f"payoff:{path}")
    np.testing.assert_array_equal(via_spec.payoffs, game.payoffs)


def test_file_name_field_wins(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(pd_with(name="my pd")))
    assert load_payoff_file(path).name == "my pd"


def test_bad_json_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"actions": [["C", "D"], ["C", "D"]],\n "payoffs": {"C,C": [1, 1],,}}\n')
    with pytest.raises(PayoffFileError, match=r"bad\.json: invalid JSON at line 2, column \d+"):
        load_payoff_file(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(PayoffFileError, match=r"nope\.json: payoff file not found"):
        load_payoff_file(path)
    with pytest.raises(PayoffFileError, match="not found"):
        get_game(f"payoff:{path}")


def test_duplicate_key_in_file(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"actions": [["C","D"],["C","D"]], "payoffs": {"C,C": [1,1], "C,C": [2,2],'
                    ' "C,D": [0,0], "D,C": [0,0], "D,D": [0,0]}}')
    with pytest.raises(PayoffFileError, match=r"dup\.json: key 'C,C' appears twice"):
        load_payoff_file(path)


def test_file_errors_name_the_path(tmp_path):
    path = tmp_path / "short.json"
    path.write_text(json.dumps(pd_with(payoffs={"C,C": [1, 1]})))
    with pytest.raises(PayoffFileError, match=r"^.*short\.json: missing payoffs"):
        load_payoff_file(path)


# --- validation errors ---------------------------------------------------------------------

@pytest.mark.parametrize("data, pattern", [
    ({"payoffs": PD["payoffs"]}, r"missing top-level key 'actions'"),
    ({"actions": PD["actions"]}, r"missing top-level key 'payoffs'"),
    (pd_with(extra=1, notes="x"), r"unknown top-level key\(s\) 'extra', 'notes'"),
    ([1, 2], r"must be a JSON object"),
    (pd_with(actions=[]), r"'actions' must be a non-empty list"),
    (pd_with(actions=[["C", "D"], []]), r"player 1 must have a non-empty list"),
    (pd_with(actions=[["C", "C"], ["C", "D"]]), r"duplicate action name 'C' for player 0"),
    (pd_with(actions=[["C", ""], ["C", "D"]]), r"non-empty strings, player 0 has ''"),
    (pd_with(actions=[["C", 3], ["C", "D"]]), r"non-empty strings, player 0 has 3"),
    (pd_with(actions=[["C", "D,E"], ["C", "D"]]), r"'D,E' of player 0 contains a comma"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": [0]}), r"payoff for 'C,D' must be a list of 2 numbers"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": [0, 1, 2]}), r"must be a list of 2 numbers"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": 5}), r"must be a list of 2 numbers"),
    (pd_with(payoffs={**PD["payoffs"], "C,X": [1, 1]}), r"unknown action 'X' for player 1 in key 'C,X'"),
    (pd_with(payoffs={**PD["payoffs"], "C": [1, 1]}), r"key 'C' names 1 action\(s\), expected 2"),
    (pd_with(payoffs={**PD["payoffs"], "C,D,C": [1, 1]}), r"names 3 action\(s\), expected 2"),
    (pd_with(payoffs={k: v for k, v in PD["payoffs"].items() if k != "D,C"}),
     r"missing payoffs for 1 joint action\(s\): 'D,C'"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": ["0", 18]}), r"payoff for 'C,D' must hold finite numbers, got '0'"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": [True, 18]}), r"finite numbers, got True"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": [float("nan"), 18]}), r"finite numbers, got nan"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": [1e300, 18]}), r"finite numbers, got 1e\+300"),
    (pd_with(payoffs={**PD["payoffs"], "C,D": [10**400, 18]}), r"finite numbers"),
    (pd_with(payoffs={**PD["payoffs"], "C, D": [1, 1]}), r"'C,D' is given twice"),
    (pd_with(payoffs=[1, 2]), r"'payoffs' must be an object"),
    (pd_with(name=""), r"'name' must be a non-empty string"),
])
def test_parse_errors(data, pattern):
    with pytest.raises(PayoffFileError, match=pattern):
        parse_game(data)


def test_missing_joint_actions_are_listed_and_counted():
    actions = [[str(i) for i in range(4)], [str(i) for i in range(4)]]
    with pytest.raises(PayoffFileError, match=r"missing payoffs for 16 joint action\(s\): '0,0', '0,1', "
                                              r"'0,2', '0,3', '1,0' and 11 more"):
        parse_game({"actions": actions, "payoffs": {}})


def test_error_is_one_line_and_prefixed_with_source():
    with pytest.raises(PayoffFileError) as info:
        parse_game(pd_with(payoffs={"C,C": [1, 1]}), source="games/x.json")
    message = str(info.value)
    assert message.startswith("games/x.json: ")
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_unknown_spec_lists_choices():
    with pytest.raises(PayoffFileError, match=r"unknown game 'chicken'.*pd, maintain, meeting3.*payoff:PATH"):
        get_game("chicken")
    with pytest.raises(PayoffFileError, match=r"'payoff:' needs a file path"):
        get_game("payoff:")


def test_matrix_game_equality_ignores_array_identity():
    assert get_game("pd") == get_game("pd")
    assert get_game("pd") != get_game("maintain")
    assert isinstance(get_game("pd"), MatrixGame)
