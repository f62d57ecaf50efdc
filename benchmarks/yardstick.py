"""The yardstick: a minimal JAX TD3+BC training loop, written apart from jaxmtf's agents and driver.

What a careful single-file JAX implementation (the JAX-CORL / unifloral style)
does: sfujim/TD3_BC's update (actor 256-256 tanh, twin critics 256-256 on
[s, a], Adam 3e-4, smoothing noise 0.2 clipped at 0.5, policy delay 2, tau
0.005, alpha 2.5) in one jitted `lax.scan`, the batch indices drawn inside the
scan, constants folded into the program, no metrics kept, no checks. The
throughput benchmarks time it beside the driver's chunk, in the same run, so
every table shows what the driver costs over it (benchmarks/README.md).
It is a reference for speed only: its learning is not tested here (the
project's TD3+BC is, against hand-computed targets and losses).
"""
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

DISCOUNT, TAU, POLICY_NOISE, NOISE_CLIP, POLICY_DELAY, ALPHA, LR = 0.99, 0.005, 0.2, 0.5, 2, 2.5, 3e-4


class Actor(nn.Module):
    act_dim: int

    @nn.compact
    def __call__(self, s):
        s = nn.relu(nn.Dense(256)(s))
        s = nn.relu(nn.Dense(256)(s))
        return jnp.tanh(nn.Dense(self.act_dim)(s))


class TwinCritic(nn.Module):
    @nn.compact
    def __call__(self, s, a):
        def q(x):
            x = nn.relu(nn.Dense(256)(x))
            x = nn.relu(nn.Dense(256)(x))
            return nn.Dense(1)(x)[:, 0]

        x = jnp.concatenate([s, a], -1)
        return q(x), q(x)


class State(NamedTuple):
    actor: Any
    critic: Any
    actor_target: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    step: jax.Array
    key: jax.Array


def make(obs_dim: int, act_dim: int, batch_size: int = 256) -> tuple[Callable, Callable]:
    """(init(key) -> State, train(state, data: dict of arrays, num_updates) -> State), train jitted."""
    actor, critic, opt = Actor(act_dim), TwinCritic(), optax.adam(LR)

    def init(key):
        k_actor, k_critic, key = jax.random.split(key, 3)
        actor_params = actor.init(k_actor, jnp.zeros((1, obs_dim)))
        critic_params = critic.init(k_critic, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)))
        return State(actor_params, critic_params, actor_params, critic_params, opt.init(actor_params),
                     opt.init(critic_params), jnp.int32(0), key)

    def update(state: State, data):
        key, k_idx, k_noise = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_idx, (batch_size,), 0, data["rewards"].shape[0])
        s, a, r, s2, d = (data[k][idx] for k in ("observations", "actions", "rewards", "next_observations",
                                                  "terminals"))
        noise = jnp.clip(POLICY_NOISE * jax.random.normal(k_noise, a.shape), -NOISE_CLIP, NOISE_CLIP)
        a2 = jnp.clip(actor.apply(state.actor_target, s2) + noise, -1.0, 1.0)
        y = r + DISCOUNT * (1.0 - d) * jnp.minimum(*critic.apply(state.critic_target, s2, a2))

        def critic_loss(params):
            q1, q2 = critic.apply(params, s, a)
            return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)

        grads = jax.grad(critic_loss)(state.critic)
        updates, critic_opt = opt.update(grads, state.critic_opt)
        state = state._replace(critic=optax.apply_updates(state.critic, updates), critic_opt=critic_opt, key=key)

        def actor_step(state):
            def actor_loss(params):
                pi = actor.apply(params, s)
                q = critic.apply(state.critic, s, pi)[0]
                return -ALPHA / jax.lax.stop_gradient(jnp.mean(jnp.abs(q))) * jnp.mean(q) + jnp.mean((pi - a) ** 2)

            updates, actor_opt = opt.update(jax.grad(actor_loss)(state.actor), state.actor_opt)
            actor_params = optax.apply_updates(state.actor, updates)
            polyak = lambda new, old: jax.tree.map(lambda n, o: TAU * n + (1 - TAU) * o, new, old)  # noqa: E731
            return state._replace(actor=actor_params, actor_opt=actor_opt,
                                  actor_target=polyak(actor_params, state.actor_target),
                                  critic_target=polyak(state.critic, state.critic_target))

        state = jax.lax.cond((state.step + 1) % POLICY_DELAY == 0, actor_step, lambda s: s, state)
        return state._replace(step=state.step + 1)

    def train(state, data, num_updates: int):
        return jax.lax.scan(lambda st, _: (update(st, data), None), state, None, length=num_updates)[0]

    return init, jax.jit(train, static_argnums=2)
