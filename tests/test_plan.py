"""The wiring plan: each agent gets exactly its neighbours' addresses; the env server none."""

import dataclasses
import shutil

import pytest

from drima.launch.plan import LaunchConfig, plan_run


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_each_agent_gets_only_its_neighbours(transport, tmp_path):
    plan = plan_run(LaunchConfig(topology="ring", n=5, transport=transport, run_dir=str(tmp_path)))
    try:
        binds = {a.agent_id: a.link_bind for a in plan.agents}
        assert len(set(binds.values())) == 5
        for a in plan.agents:
            expected = {(a.agent_id - 1) % 5, (a.agent_id + 1) % 5}
            assert {int(p) for p in a.peers} == expected
            assert all(a.peers[str(p)] == binds[p] for p in expected)
            assert a.env_address == plan.env_server.address
            assert a.run_dir.endswith(f"agent_{a.agent_id}")
        server_fields = {f.name for f in dataclasses.fields(plan.env_server)}
        assert not server_fields & {"peers", "neighbours", "topology", "link_bind"}
        assert not any(b in str(dataclasses.asdict(plan.env_server)) for b in binds.values())
        assert len({a.seed for a in plan.agents}) == 5
    finally:
        if plan.socket_dir:
            shutil.rmtree(plan.socket_dir)


def test_smax_sight_neighbourhoods_and_ctde_state_are_wired(tmp_path):
    plan = plan_run(LaunchConfig(env="smax:3m", algo="ppo", topology="range:sight", n=3, run_dir=str(tmp_path)))
    try:
        assert plan.env_server.range_sight and plan.env_server.range_radius == 0.0
        assert not plan.env_server.share_team_reward
        assert all(len(a.peers) == 2 for a in plan.agents)  # linked to all; the env server says who is in sight
        assert all(a.startup_timeout_s == 600.0 for a in plan.agents)  # JAX compiles before the server answers
    finally:
        shutil.rmtree(plan.socket_dir)
    ctde = plan_run(LaunchConfig(env="smax:3m", algo="ppo", mode="ctde", topology="range:sight", n=3,
                                 run_dir=str(tmp_path)))
    shutil.rmtree(ctde.socket_dir)
    assert ctde.env_server.share_team_reward and all(not a.peers for a in ctde.agents)
    critics = plan_run(LaunchConfig(env="smax:3m", algo="ppo", global_state=True, topology="range:sight", n=3,
                                    run_dir=str(tmp_path)))
    shutil.rmtree(critics.socket_dir)  # dri with centralised critics: the state, and neighbours still
    assert critics.env_server.share_team_reward and all(len(a.peers) == 2 for a in critics.agents)
    ring = plan_run(LaunchConfig(topology="ring", n=3, run_dir=str(tmp_path)))
    shutil.rmtree(ring.socket_dir)
    assert ring.agents[0].startup_timeout_s == 60.0
