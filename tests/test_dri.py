import numpy as np
import pytest

from drima.agent.dri import reshape_reward, update_mu

# Paper section 3.2: p = 0.4 (red defects), q = 0.8 (blue defects).
PD = {("C", "C"): (10, 10), ("C", "D"): (0, 18), ("D", "C"): (18, 0), ("D", "D"): (2, 2)}


def expected_mu(p: float, q: float) -> tuple[float, float]:
    probs = {("C", "C"): (1 - p) * (1 - q), ("C", "D"): (1 - p) * q, ("D", "C"): p * (1 - q), ("D", "D"): p * q}
    red = sum(probs[k] * PD[k][0] for k in PD)
    blue = sum(probs[k] * PD[k][1] for k in PD)
    return red, blue


def test_paper_worked_example_values():
    mu_red, mu_blue = expected_mu(0.4, 0.8)
    assert mu_red == pytest.approx(3.28)
    assert mu_blue == pytest.approx(10.48)
    assert (mu_red + mu_blue) / 2 == pytest.approx(6.88)


def test_paper_worked_example_conflict_on_0_18():
    mu_red, mu_blue = expected_mu(0.4, 0.8)
    red = reshape_reward("dri", np.array([0.0]), mu_red, np.array([[18.0]]), np.array([mu_blue]))
    assert red.conflict.tolist() == [True]
    assert red.signal[0] == pytest.approx(9 - 6.88)  # 2.12
    blue = reshape_reward("dri", np.array([18.0]), mu_blue, np.array([[0.0]]), np.array([mu_red]))
    assert blue.conflict.tolist() == [True]
    assert blue.signal[0] == pytest.approx(2.12)


@pytest.mark.parametrize("joint", [(10.0, 10.0), (2.0, 2.0)])
def test_paper_worked_example_no_conflict(joint):
    mu_red, mu_blue = expected_mu(0.4, 0.8)
    red = reshape_reward("dri", np.array([joint[0]]), mu_red, np.array([[joint[1]]]), np.array([mu_blue]))
    assert red.conflict.tolist() == [False]
    assert red.signal[0] == pytest.approx(joint[0] - 6.88)


def test_vectorised_over_env_copies():
    own = np.array([0.0, 10.0, 2.0, 18.0])
    other = np.array([18.0, 10.0, 2.0, 0.0])
    out = reshape_reward("dri", own, 3.28, other[None, :], np.array([10.48]))
    assert out.conflict.tolist() == [True, False, False, True]
    np.testing.assert_allclose(out.signal, [9 - 6.88, 10 - 6.88, 2 - 6.88, 9 - 6.88])


def test_sign_zero_own_differential_conflicts_with_positive_neighbour():
    # r - mubar == 0 gives sgn 0, which differs from the neighbours' +1: conflict.
    out = reshape_reward("dri", np.array([5.0]), 5.0, np.array([[9.0]]), np.array([5.0]))
    assert out.conflict.tolist() == [True]
    assert out.signal[0] == pytest.approx(7.0 - 5.0)


def test_sign_zero_on_both_sides_is_no_conflict():
    out = reshape_reward("dri", np.array([4.0]), 4.0, np.array([[4.0]]), np.array([4.0]))
    assert out.conflict.tolist() == [False]
    assert out.signal[0] == 0.0


def test_sign_zero_neighbour_side_conflicts_with_negative_own():
    # mubar = 3; own 1 -> sgn -1; neighbours mean 3 -> sgn 0: conflict.
    out = reshape_reward("dri", np.array([1.0]), 3.0, np.array([[3.0]]), np.array([3.0]))
    assert out.conflict.tolist() == [True]
    assert out.signal[0] == pytest.approx(2.0 - 3.0)


def test_several_neighbours_use_means_that_include_and_exclude_self():
    own = np.array([0.0])
    nbrs = np.array([[12.0], [6.0]])
    mus = np.array([4.0, 8.0])
    out = reshape_reward("dri", own, 3.0, nbrs, mus)
    mubar = (3 + 4 + 8) / 3
    assert out.conflict.tolist() == [True]  # 0 - 5 < 0, mean(12, 6) - 5 > 0
    assert out.signal[0] == pytest.approx((0 + 12 + 6) / 3 - mubar)


@pytest.mark.parametrize("mode", ["dri", "dri-naive", "ind"])
def test_isolated_agent_learns_independently(mode):
    out = reshape_reward(mode, np.array([7.0, 1.0]), 2.0, np.zeros((0, 2)), np.zeros(0))
    np.testing.assert_allclose(out.signal, [5.0, -1.0])
    assert not out.conflict.any()


def test_dri_naive_always_averages():
    out = reshape_reward("dri-naive", np.array([10.0]), 6.0, np.array([[10.0]]), np.array([2.0]))
    assert out.signal[0] == pytest.approx(10.0 - 4.0)
    assert not out.conflict.any()


def test_ind_ignores_neighbours_and_uses_own_mu():
    out = reshape_reward("ind", np.array([0.0]), 3.28, np.array([[18.0]]), np.array([10.48]))
    assert out.signal[0] == pytest.approx(-3.28)
    assert not out.conflict.any()


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown reward mode"):
        reshape_reward("dri-typo", np.array([1.0]), 0.0, np.array([[1.0]]), np.array([0.0]))


def test_mu_update_uses_original_reward_not_the_signal():
    own = np.array([0.0])
    reshaped = reshape_reward("dri", own, 3.28, np.array([[18.0]]), np.array([10.48]))
    assert reshaped.signal[0] > 0  # the learner sees +2.12 ...
    mu = update_mu(3.28, own, 0.5)
    assert mu == pytest.approx(3.28 + 0.5 * (0.0 - 3.28))  # ... but mu moves toward the true 0


def test_mu_update_averages_env_copies():
    assert update_mu(0.0, np.array([2.0, 4.0]), 0.1) == pytest.approx(0.3)


# -- per-copy neighbourhoods (range topologies) and ctde ---------------------------------------

@pytest.mark.parametrize("mode", ["dri", "dri-naive"])
def test_in_range_all_true_is_the_static_rule(mode):
    rng = np.random.default_rng(0)
    r, nbr, mus = rng.normal(size=6), rng.normal(size=(3, 6)), rng.normal(size=3)
    plain = reshape_reward(mode, r, 0.3, nbr, mus)
    masked = reshape_reward(mode, r, 0.3, nbr, mus, in_range=np.ones((3, 6), bool))
    np.testing.assert_allclose(masked.signal, plain.signal)
    np.testing.assert_array_equal(masked.conflict, plain.conflict)


@pytest.mark.parametrize("mode", ["dri", "dri-naive"])
def test_in_range_equals_the_rule_on_each_copys_own_neighbours(mode):
    rng = np.random.default_rng(1)
    k, m = 8, 4
    r, nbr, mus = rng.normal(size=k), rng.normal(size=(m, k)), rng.normal(size=m)
    mask = rng.random((m, k)) < 0.5
    mask[:, 0] = False  # copy 0: nobody in range
    out = reshape_reward(mode, r, -0.2, nbr, mus, in_range=mask)
    for c in range(k):
        js = np.flatnonzero(mask[:, c])
        one = reshape_reward(mode, r[c:c + 1], -0.2, nbr[js, c:c + 1], mus[js])
        assert out.signal[c] == pytest.approx(one.signal[0])
        assert out.conflict[c] == one.conflict[0]
    assert out.signal[0] == pytest.approx(r[0] + 0.2) and not out.conflict[0]  # isolated: independent


def test_ctde_uses_the_reward_it_is_given_and_ignores_neighbours():
    team = np.array([3.0, -1.0])
    out = reshape_reward("ctde", team, 0.5, np.array([[100.0, 100.0]]), np.array([9.0]))
    np.testing.assert_allclose(out.signal, team - 0.5)
    assert not out.conflict.any()


def test_unknown_mode_is_rejected_even_without_neighbours():
    with pytest.raises(ValueError, match="unknown reward mode"):
        reshape_reward("dri-typo", np.zeros(2), 0.0, np.zeros((0, 2)), np.zeros(0))
