"""Recurrent PPO: action masks are obeyed, the GRU carries memory across steps, the ctde critic
reads the global state, and bad configs are named."""

import numpy as np
import pytest
import torch

from drima.agent.learners import make_learner
from drima.types import StepInfo, transition

K = 32


def test_ppo_learns_a_masked_memory_task_that_needs_its_gru():
    """Two-step episodes: step 0 shows a cue (0 or 1) and allows only 'wait' (action 2); step 1
    shows the same blank observation whatever the cue and allows only 0 or 1, paying +1 for
    repeating the cue. Without memory the best is 50 %; the GRU must carry the cue."""
    torch.set_num_threads(1)
    learner = make_learner("ppo", 3, {"type": "discrete", "n": 3},
                           {"n_steps": 8, "chunk_len": 4, "epochs": 4, "lr": 3e-3, "critic_lr": 3e-3, "gamma": 0.9}, 0)
    rng = np.random.default_rng(0)
    cue_step, recall_step = StepInfo(avail=np.tile([0, 0, 1], (K, 1))), StepInfo(avail=np.tile([1, 1, 0], (K, 1)))
    blank = np.tile(np.float32([0, 0, 1]), (K, 1))
    no, yes = np.zeros(K, np.float32), np.ones(K, np.float32)
    correct = []
    for _ in range(200):
        cue = rng.integers(0, 2, K)
        shown = np.eye(3, dtype=np.float32)[cue]
        wait = learner.act(shown, cue_step)
        assert (wait == 2).all(), "a masked action was taken"
        learner.update(transition(shown, wait, no, blank, no, next_info=recall_step))
        answer = learner.act(blank, recall_step)
        assert (answer < 2).all(), "a masked action was taken"
        correct.append((answer == cue).mean())
        reward = np.where(answer == cue, 1.0, -1.0).astype(np.float32)
        learner.update(transition(blank, answer, reward, shown, yes, next_info=cue_step))
    assert np.mean(correct[:10]) < 0.7  # it starts at chance
    assert np.mean(correct[-20:]) > 0.95
    # evaluation: greedy actions, no updates; episode_ends restarts the GRU where episodes end
    for _ in range(5):
        cue = rng.integers(0, 2, K)
        assert (learner.act(np.eye(3, dtype=np.float32)[cue], cue_step, greedy=True) == 2).all()
        learner.episode_ends(no)
        assert (learner.act(blank, recall_step, greedy=True) == cue).mean() >= 0.97
        learner.episode_ends(yes)


def test_ctde_critic_reads_the_global_state():
    learner = make_learner("ppo", 4, {"type": "discrete", "n": 2}, {"n_steps": 2, "chunk_len": 1}, 0, state_dim=7)
    assert learner.critic.base[0].normalized_shape == (7,) and learner.actor.base[0].normalized_shape == (4,)
    obs = np.zeros((K, 4), np.float32)
    with pytest.raises(ValueError, match="global state"):
        learner.act(obs)
    info = StepInfo(state=np.ones((K, 7), np.float32))
    before = [p.clone() for p in learner.critic.parameters()]
    for _ in range(2):
        a = learner.act(obs, info)
        out = learner.update(transition(obs, a, np.ones(K, np.float32), obs, np.zeros(K, np.float32), next_info=info))
    assert set(out) == {"actor_loss", "critic_loss", "entropy"}
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.critic.parameters(), strict=True))


def test_a_long_update_reports_progress_after_every_gradient_step():
    """The agent process hangs its env-link heartbeat here: an update of seconds must not look dead."""
    learner = make_learner("ppo", 2, {"type": "discrete", "n": 2},
                           {"n_steps": 4, "chunk_len": 2, "epochs": 3, "minibatches": 2}, 0)
    calls = []
    learner.on_progress = lambda: calls.append(1)
    obs = np.zeros((K, 2), np.float32)
    for _ in range(4):
        learner.update(transition(obs, learner.act(obs), np.ones(K, np.float32), obs, np.zeros(K, np.float32)))
    assert len(calls) == 3 * 2


def test_ppo_options_that_contradict_each_other_are_named():
    with pytest.raises(ValueError, match="chunk_len 3 must divide n_steps 8"):
        make_learner("ppo", 2, {"type": "discrete", "n": 2}, {"n_steps": 8, "chunk_len": 3}, 0)


@pytest.mark.parametrize("continuing", [False, True])
def test_a_differential_signal_cut_at_episode_ends_pays_to_quit_early(continuing):
    """Why `continuing` exists. Each step an agent may work (reward 1; the episode ends after 4
    steps of work) or quit (reward 0, the episode ends now). The learner gets the differential
    signal r - mu with mu = 2, so every step costs 2. Cut at episode ends, that cost makes quitting
    at once (-2) beat 4 steps of work (-4): the pathology of SMAX units that learn to die fast.
    Bootstrapping through the ends, as in the paper's average-reward view where the next episode
    follows, quitting only starts the next episode sooner, and work (-1 per step) beats it (-2)."""
    torch.set_num_threads(1)
    learner = make_learner("ppo", 4, {"type": "discrete", "n": 2},
                           {"n_steps": 8, "chunk_len": 4, "epochs": 4, "lr": 3e-3, "critic_lr": 3e-3,
                            "gamma": 0.9, "continuing": continuing}, 0)
    t = np.zeros(K, np.int64)  # steps worked in the current episode
    first_actions = []
    for _ in range(150):
        obs = np.eye(4, dtype=np.float32)[t]
        work = learner.act(obs)
        first_actions.append(work[t == 0])
        t_next = np.where(work == 1, t + 1, 0)
        done = (work == 0) | (t_next == 4)
        t = np.where(done, 0, t_next)
        learner.update(transition(obs, work, work.astype(np.float32) - 2.0, np.eye(4, dtype=np.float32)[t],
                                  done.astype(np.float32)))
    assert 0.3 < np.concatenate(first_actions[:5]).mean() < 0.7  # it starts at chance
    works_at_start = np.concatenate(first_actions[-50:]).mean()
    if continuing:
        assert works_at_start > 0.9
    else:
        assert works_at_start < 0.1


@pytest.mark.parametrize("active_masks", [False, True])
def test_with_active_masks_steps_without_a_choice_do_not_move_the_policy(active_masks):
    """Half the copies are 'dead' (one allowed action) for the whole rollout. With active masks
    their rewards must not change the actor's update at all; without, they do (through the
    advantage statistics)."""
    def actor_after(dead_signal: float) -> list[torch.Tensor]:
        learner = make_learner("ppo", 3, {"type": "discrete", "n": 3},
                               {"n_steps": 4, "chunk_len": 2, "epochs": 2, "active_masks": active_masks}, 0)
        avail = np.ones((K, 3), np.uint8)
        avail[: K // 2, 1:] = 0  # dead: only action 0
        info = StepInfo(avail=avail)
        rng = np.random.default_rng(1)
        for _ in range(4):
            obs = rng.normal(size=(K, 3)).astype(np.float32)
            actions = learner.act(obs, info)
            assert (actions[: K // 2] == 0).all()
            signal = np.where(np.arange(K) < K // 2, dead_signal, rng.normal(size=K)).astype(np.float32)
            learner.update(transition(obs, actions, signal, obs, np.zeros(K, np.float32), next_info=info))
        return [p.detach().clone() for p in learner.actor.parameters()]

    same = all(torch.allclose(a, b, atol=1e-7) for a, b in zip(actor_after(-5.0), actor_after(5.0), strict=True))
    assert same == active_masks


def test_step_sizes_fall_linearly_to_zero_over_lr_anneal_steps_and_a_resumed_learner_goes_on():
    cfg = {"n_steps": 2, "chunk_len": 1, "epochs": 1, "lr": 1e-3, "critic_lr": 2e-3, "lr_anneal_steps": 4}
    learner = make_learner("ppo", 3, {"type": "discrete", "n": 2}, cfg, 0)
    obs, no = np.ones((K, 3), np.float32), np.zeros(K, np.float32)
    signal = np.linspace(-1, 1, K).astype(np.float32)

    def one_rollout(lrn) -> list[torch.Tensor]:
        before = [p.clone() for p in lrn.actor.parameters()]
        for _ in range(cfg["n_steps"]):
            lrn.update(transition(obs, lrn.act(obs), signal, obs, no))
        return before

    one_rollout(learner)  # learned from with the full step sizes
    assert learner.actor_opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    one_rollout(learner)  # 2 of 4 steps learned before it: half
    assert learner.actor_opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert learner.critic_opt.param_groups[0]["lr"] == pytest.approx(1e-3)

    resumed = make_learner("ppo", 3, {"type": "discrete", "n": 2}, cfg, 1)
    resumed.load_state_dict(learner.state_dict())
    before = one_rollout(resumed)  # 4 of 4 steps: step size 0, the policy no longer moves
    assert resumed.actor_opt.param_groups[0]["lr"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, resumed.actor.parameters(), strict=True))
    with pytest.raises(ValueError, match="lr_anneal_steps"):
        make_learner("ppo", 3, {"type": "discrete", "n": 2}, {"lr_anneal_steps": -1}, 0)
