"""Each learner: action shapes and ranges, an update that changes the weights, a checkpoint
that restores everything (same actions after reload)."""

import numpy as np
import pytest
import torch

from drima.agent.checkpoint import load_checkpoint, save_checkpoint
from drima.agent.core import AgentCore
from drima.agent.learners import env_defaults, make_learner
from drima.types import transition

SPACE = {"type": "discrete", "n": 3}


OPTS = {"a2c": {}, "dqn": {"learning_starts": 8, "batch_size": 8}, "ddpg": {"learning_starts": 8, "batch_size": 8},
        "ppo": {"n_steps": 2, "chunk_len": 2}}


@pytest.mark.parametrize("algo", ["a2c", "dqn", "ddpg", "ppo"])
def test_act_update_and_checkpoint_round_trip(algo, tmp_path):
    opts = OPTS[algo]
    core = AgentCore(make_learner(algo, 2, SPACE, opts, seed=1), "dri", 0.05)
    obs = np.ones((8, 2), np.float32)
    before = [p.detach().clone() for p in torch.nn.Module.parameters(_main_net(core.learner))]
    for _ in range(3):
        actions = core.act(obs)
        assert actions.shape == (8,) and actions.dtype == np.int32
        assert actions.min() >= 0 and actions.max() < 3
        core.learn(obs, actions, np.full(8, 5.0, np.float32), obs, np.zeros(8, np.float32),
                   np.full((1, 8), 1.0), np.array([0.0]))
    after = list(_main_net(core.learner).parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), "no weight moved"
    assert core.mu == pytest.approx(5.0 * (1 - 0.95**3))  # mu moved toward the original reward only

    save_checkpoint(tmp_path / "ckpt.pt", core, step=3)
    expected = np.stack([core.act(obs) for _ in range(5)])  # draws after the checkpoint
    restored = AgentCore(make_learner(algo, 2, SPACE, opts, seed=99), "dri", 0.05)
    assert load_checkpoint(tmp_path / "ckpt.pt", restored) == 3
    assert restored.mu == pytest.approx(core.mu)
    for a, b in zip(_main_net(core.learner).parameters(), _main_net(restored.learner).parameters(), strict=True):
        assert torch.equal(a, b)
    # weights and the sampling RNG streams are restored: the same draws follow
    np.testing.assert_array_equal(np.stack([restored.act(obs) for _ in range(5)]), expected)


@pytest.mark.parametrize("algo", ["a2c", "dqn", "ddpg", "ppo"])
def test_greedy_actions_are_deterministic_and_the_policys_best(algo):
    learner = make_learner(algo, 2, SPACE, OPTS[algo], seed=1)
    obs = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    greedy = [learner.act(obs, greedy=True) for _ in range(3)]
    sampled = [learner.act(obs) for _ in range(3)]
    assert all(np.array_equal(greedy[0], g) for g in greedy[1:])
    assert any(not np.array_equal(sampled[0], s) for s in sampled[1:])  # exploring acts differ, greedy ones not
    if algo in ("a2c", "ddpg"):
        np.testing.assert_array_equal(greedy[0], learner.policy(obs).argmax(-1))
    elif algo == "dqn":
        np.testing.assert_array_equal(greedy[0], learner.q(torch.as_tensor(obs)).argmax(-1).numpy())


def _main_net(learner):
    return getattr(learner, "actor", None) or learner.q


def test_unknown_learner_option_is_named():
    with pytest.raises(ValueError, match="lr_actorr"):
        make_learner("a2c", 1, SPACE, {"lr_actorr": 1.0}, 0)


def test_one_state_games_default_to_gamma_zero():
    assert env_defaults({"single_state": True}, "dqn") == {"gamma": 0.0}
    assert env_defaults({}, "a2c") == {}
    assert env_defaults({"episode_length": 30}, "ddpg") == {"gamma": 0.95, "buffer_size": 32768}
    assert env_defaults({"episode_length": 30}, "dqn") == {"gamma": 0.95}  # only fields dqn has
    assert env_defaults({"episode_length": 30}, "a2c")["n_steps"] == 5


def test_a2c_learns_the_better_arm_of_a_bandit():
    learner = make_learner("a2c", 1, {"type": "discrete", "n": 2}, {"gamma": 0.0, "lr_actor": 3e-3}, 0)
    obs = np.ones((16, 1), np.float32)
    for _ in range(300):
        a = learner.act(obs)
        signal = np.where(a == 1, 1.0, -1.0).astype(np.float32)
        learner.update(transition(obs, a, signal, obs, np.zeros(16, np.float32)))
    assert learner.policy(obs[:1])[0, 1] > 0.9


def test_ddpg_continuous_actions_are_bounded_and_learn_a_target_action():
    """A one-state task whose signal is highest at action (0.5, -0.5): the greedy action moves there."""
    space = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
    learner = make_learner("ddpg", 1, space, {"gamma": 0.0, "learning_starts": 32, "batch_size": 32}, 0)
    obs = np.ones((16, 1), np.float32)
    target = np.array([0.5, -0.5], np.float32)
    for _ in range(1000):
        a = learner.act(obs)
        assert a.shape == (16, 2) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
        signal = -((a - target) ** 2).sum(1).astype(np.float32)
        learner.update(transition(obs, a, signal, obs, np.zeros(16, np.float32)))
    np.testing.assert_allclose(learner.policy(obs[:1])[0], target, atol=0.1)


def test_continuous_actions_are_refused_by_discrete_only_learners():
    with pytest.raises(ValueError, match="a2c supports discrete"):
        make_learner("a2c", 3, {"type": "continuous", "dim": 2}, {}, 0)


def test_a2c_with_rollouts_updates_every_n_steps_and_credits_delayed_reward():
    """Two-step episodes: the first action alone decides the reward paid at the SECOND step.
    Only the bootstrapped / GAE return carries it back; the n-step learner must find it."""
    learner = make_learner("a2c", 2, {"type": "discrete", "n": 2},
                           {"gamma": 0.9, "n_steps": 4, "lr_actor": 3e-3}, 0)
    first, second = np.tile([1.0, 0.0], (16, 1)).astype(np.float32), np.tile([0.0, 1.0], (16, 1)).astype(np.float32)
    no, yes = np.zeros(16, np.float32), np.ones(16, np.float32)
    infos = []
    for _ in range(600):
        a0 = learner.act(first)
        infos.append(learner.update(transition(first, a0, no, second, no)))
        a1 = learner.act(second)
        signal = np.where(a0 == 1, 1.0, -1.0).astype(np.float32)
        infos.append(learner.update(transition(second, a1, signal, first, yes)))
    assert [bool(i) for i in infos[:8]] == [False, False, False, True] * 2  # one update per 4 steps
    assert learner.policy(first[:1])[0, 1] > 0.9


@pytest.mark.parametrize("algo", ["a2c", "dqn", "ddpg"])
def test_acting_in_numpy_follows_the_torch_network_through_updates_and_a_reload(algo, tmp_path):
    """act() runs the network in numpy over views of the torch weights: it must see every
    optimizer step and a checkpoint's weights, or an agent would act on a stale policy."""
    from drima.agent.learners.nets import NumpyMLP

    core = AgentCore(make_learner(algo, 2, SPACE, OPTS[algo], seed=1), "dri", 0.05)
    obs = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)

    def agree(forward: NumpyMLP, net: torch.nn.Sequential) -> None:
        x = np.random.default_rng(1).standard_normal((8, net[0].in_features)).astype(np.float32)
        with torch.no_grad():
            expected = net(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(forward(x), expected, rtol=1e-5, atol=1e-6)

    def numpy_twins(learner) -> list[tuple[NumpyMLP, torch.nn.Sequential]]:
        """Each numpy forward with its torch network: acting, and the targets computed in numpy."""
        twins = [(learner.act_forward, _main_net(learner) if algo != "ddpg" else learner.actor)]
        if algo == "a2c":
            twins.append((learner.critic_forward, learner.critic))
        if algo == "dqn":
            twins.append((learner.target_forward, learner.q_target))
        if algo == "ddpg":
            twins += [(learner.actor_target_forward, learner.actor_target),
                      (learner.critic_target_forward, learner.critic_target)]
        return twins

    for forward, net in numpy_twins(core.learner):
        agree(forward, net)
    for _ in range(12):  # past learning_starts: DQN and DDPG take gradient steps
        actions = core.act(obs)
        core.learn(obs, actions, np.full(8, 5.0, np.float32), obs, np.zeros(8, np.float32),
                   np.full((1, 8), 1.0), np.array([0.0]))
    for forward, net in numpy_twins(core.learner):
        agree(forward, net)
    save_checkpoint(tmp_path / "ckpt.pt", core, step=12)
    restored = AgentCore(make_learner(algo, 2, SPACE, OPTS[algo], seed=99), "dri", 0.05)
    load_checkpoint(tmp_path / "ckpt.pt", restored)
    for forward, net in numpy_twins(restored.learner):  # the restored learner's own views hold the saved weights
        agree(forward, net)


def test_sampled_actions_follow_the_softmax_and_never_take_an_impossible_action():
    from drima.agent.learners.nets import sample_categorical

    logits = np.array([[0.0, np.log(3.0), -1e9]] * 40_000, np.float32)  # probabilities 1/4, 3/4, 0
    actions = sample_categorical(logits, np.random.default_rng(0))
    assert actions.dtype == np.int32 and set(np.unique(actions)) <= {0, 1}
    assert np.mean(actions == 1) == pytest.approx(0.75, abs=0.01)


def test_gae_advantages_are_the_discounted_sums_of_td_errors_cut_at_episode_ends():
    """A_t = sum over l >= 0 of (gamma lambda)^l delta_{t+l}, stopping after a chain break; no
    bootstrap where the step stopped (terminal). Checked against that sum written out directly."""
    from drima.agent.learners.a2c import gae_advantages

    rng = np.random.default_rng(0)
    n, k, gamma, lam = 6, 3, 0.9, 0.8
    signal, v, v_next = rng.standard_normal((3, n, k)).astype(np.float32)
    stop = rng.random((n, k)) < 0.2
    chain_break = stop | (rng.random((n, k)) < 0.2)  # truncations break the chain but bootstrap
    delta = signal + gamma * v_next * ~stop - v
    expected = np.zeros((n, k))
    for t in range(n):
        for j in range(k):
            for step in range(t, n):
                expected[t, j] += (gamma * lam) ** (step - t) * delta[step, j]
                if chain_break[step, j]:
                    break
    got = gae_advantages(signal, v, v_next, stop, chain_break, gamma, lam)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gae_advantages(signal[:1], v[:1], v_next[:1], stop[:1], chain_break[:1], gamma, lam),
                               delta[:1], rtol=1e-6)  # one step: the TD error itself
