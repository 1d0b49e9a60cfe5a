"""Learning through the real runtime: DRI escapes the Prisoner's Dilemma saddle, -ind does not."""

import pytest

from helpers import load_summary, run_launch

pytestmark = pytest.mark.slow

BUDGET = ["--env", "pd", "--n", "2", "--algo", "a2c", "--steps", "600", "--envs", "8", "--seed", "3"]


def test_a2c_dri_reaches_cooperation_and_a2c_ind_does_not(tmp_path):
    dri, ind = tmp_path / "dri", tmp_path / "ind"
    assert run_launch(dri, *BUDGET, "--mode", "dri").returncode == 0
    assert run_launch(ind, *BUDGET, "--mode", "ind").returncode == 0
    dri_freq = load_summary(dri)["final"]["joint_action_freq"]
    ind_freq = load_summary(ind)["final"]["joint_action_freq"]
    assert dri_freq["C,C"] >= 0.9, dri_freq
    assert ind_freq["C,C"] < 0.5, ind_freq
    assert ind_freq["D,D"] >= 0.9, ind_freq
