"""How far simple scripts get against SMAX's heuristic enemy: a yardstick for learned win rates.

Scripted allies play full battles (jaxmarl's HeuristicEnemySMAX, the same enemy as the benchmark)
and the win rate is printed per policy:

  heuristic   the allies play the enemy's own policy (shoot the closest enemy in range, else advance)
  focus       each ally that can shoot aims at the enemy in range with the least health (focus fire),
              otherwise it plays the heuristic

    python benchmarks/smax_scripted.py --map 3m --battles 1024
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from drima.env_server.smax import N_MOVE_ACTIONS


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--map", default="3m")
    p.add_argument("--battles", type=int, default=1024, help="battles per policy, played in batches of 256")
    p.add_argument("--policies", nargs="+", default=["heuristic", "focus"], choices=["heuristic", "focus"])
    args = p.parse_args()

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
    from jaxmarl.environments.smax.heuristic_enemy import create_heuristic_policy, get_heuristic_policy_initial_state

    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(args.map))
    n_allies = env.num_allies
    heuristic = create_heuristic_policy(env._env, 0, shoot=True, attack_mode="closest")

    def battle_won(policy: str, key: jax.Array) -> jax.Array:
        key, k = jax.random.split(key)
        obs, state = env.reset(k)
        hstate = jax.tree.map(lambda *x: jnp.stack(x), *([get_heuristic_policy_initial_state()] * n_allies))

        def step(carry, _):
            key, obs, state, hstate, over, won = carry
            key, k_act, k_step = jax.random.split(key, 3)
            acts, hstate = jax.vmap(heuristic)(jax.random.split(k_act, n_allies), hstate,
                                               jnp.stack([obs[a] for a in env.agents]))
            if policy == "focus":
                avail = env.get_avail_actions(state)
                can_hit = jnp.stack([avail[a] for a in env.agents])[:, N_MOVE_ACTIONS:] == 1  # (allies, enemies)
                enemy_health = state.state.unit_health[n_allies:]
                target = jnp.argmin(jnp.where(can_hit, enemy_health[None, :], jnp.inf), axis=1)
                acts = jnp.where(can_hit.any(1), N_MOVE_ACTIONS + target, acts)
            obs, state, _, dones, _ = env.step_env(k_step, state, {a: acts[i] for i, a in enumerate(env.agents)})
            alive = state.state.unit_alive
            # a battle counts once: the step it ends decides it (the env restarts itself afterwards)
            won = jnp.where(over, won, dones["__all__"] & ~alive[n_allies:].any() & alive[:n_allies].any())
            return (key, obs, state, hstate, over | dones["__all__"], won), None

        init = (key, obs, state, hstate, jnp.array(False), jnp.array(False))
        (_, _, _, _, over, won), _ = jax.lax.scan(step, init, None, length=env.max_steps)
        return won & over

    for policy in args.policies:
        play = jax.jit(jax.vmap(lambda k, policy=policy: battle_won(policy, k)))
        batches = max(1, args.battles // 256)
        wins = [np.asarray(play(jax.random.split(jax.random.PRNGKey(b), 256))) for b in range(batches)]
        print(f"{args.map} {policy:>9}: win rate {np.mean(wins):.3f} over {256 * batches} battles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
