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
