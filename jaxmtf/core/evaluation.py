"""Ground-truth evaluation of policies in the simulator.

`evaluate_policy` rolls any policy out on fresh users and reports the mean
discounted and undiscounted return, session length, per-task positive rates
(responses per item shown) and 95% confidence intervals over users (the
normal approximation: n is the number of users, hundreds and more;
`stats.normal_halfwidth`; the `*_ci95` entries);
`evaluate_policy_per_user` also returns each user's return, for paired
comparisons of policies scored on the same users.

`evaluate_agents` does the same for a stack of trained agents [S, H] in one
compiled program, and also reports the agent's own value estimate
Q(s_0, pi(s_0)) at the users' initial states against the true discounted
return from those states: the overestimation measure of the BCQ paper.
`make_eval_fn` packages it for the training driver (eval.jsonl).

Every entry point checks its inputs first (`check_eval_inputs`,
`check_policy`): a bad user count, discount or policy fails with one
`EvaluationError` line naming the argument, the value and what was
expected, before a rollout is traced.
"""
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf import schema
from jaxmtf.agents import common
from jaxmtf.sim import registry
from jaxmtf.sim.rollout import Trajectory, returns, rollout
from jaxmtf.stats import normal_halfwidth


class EvaluationError(ValueError):
    """An evaluation input (user count, discount, policy) is invalid. The message names it."""


def check_eval_inputs(num_users, discount) -> None:
    """num_users an integer >= 1, discount a number in [0, 1] (the driver's eval_users, eval_discount)."""
    for name, value, spec in (("num_users", num_users, schema.integer(1)), ("discount", discount, schema.real(0, 1))):
        if not spec.check(value):
            raise EvaluationError(f"evaluation argument '{name}': got {value!r}, expected {spec.expected}")


def check_policy(env_params, policy_fn, policy_params) -> None:
    """policy_fn(params, obs [obs_dim], key) -> action [act_dim] floats (a discrete simulator: one integer),
    checked by tracing its shapes only."""
    env = registry.of(env_params)
    discrete = env.num_actions(env_params) > 0
    want = f"a callable policy(params, obs [obs_dim], key) -> {'an integer action' if discrete else 'action [act_dim]'}"
    if not callable(policy_fn):
        raise EvaluationError(f"evaluation argument 'policy_fn': got {policy_fn!r}, expected {want}")
    obs = jax.ShapeDtypeStruct((env.obs_dim(env_params),), jnp.float32)
    try:
        # params closed over: any Python object a policy takes is fine; only shapes are traced.
        action = jax.eval_shape(lambda o, k: policy_fn(policy_params, o, k), obs, jax.random.PRNGKey(0))
    except Exception as e:  # whatever the policy raises on one observation, said in one line
        raise EvaluationError(
            f"evaluation argument 'policy_fn': got a policy that fails on one observation of shape {obs.shape} "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}), expected {want}"
        ) from None
    shape, dtype = getattr(action, "shape", None), getattr(action, "dtype", None)
    if discrete:
        if shape != () or not jnp.issubdtype(dtype, jnp.integer):
            raise EvaluationError(
                f"evaluation argument 'policy_fn': got an action of shape {shape} and dtype {dtype}, expected "
                f"one integer in [0, {env.num_actions(env_params)}) (the {env.name} simulator's discrete action)"
            )
        return
    act_dim = env.act_dim(env_params)
    if shape != (act_dim,) or not jnp.issubdtype(dtype, jnp.floating):
        raise EvaluationError(
            f"evaluation argument 'policy_fn': got an action of shape {shape} and dtype {dtype}, expected "
            f"shape ({act_dim},) floats (act_dim of the simulator)"
        )


def _summarise(traj: Trajectory, per_user: Dict[str, jax.Array], env_params) -> Dict[str, jax.Array]:
    """Means and 95% CI half-widths over users (normal approximation) of one trajectory batch, from its
    per-user `returns`."""
    num_users = traj.rewards.shape[1]
    out = {}
    for name in ("discounted", "undiscounted", "length"):
        x = per_user[name].astype(jnp.float32)
        out[f"{name}_return" if name != "length" else "session_length"] = jnp.mean(x)
        out[f"{name}_return_ci95" if name != "length" else "session_length_ci95"] = (
            normal_halfwidth(jnp.std(x, ddof=1), num_users)  # over users: normal
        )
    # Per-task positive rate per item shown: responses / (valid steps x slate size; x 1 for a day's decision).
    items_shown = jnp.sum(traj.valid) * registry.of(env_params).items_per_step(env_params)
    totals = jnp.sum(traj.task_responses, axis=(0, 1))
    for k, task in enumerate(env_params.task_names):
        out[f"rate_{task}"] = totals[k] / items_shown
    return out


def evaluate_policy(
    key: jax.Array,
    env_params,
    policy_fn: Callable,
    policy_params,
    num_users: int = 1024,
    discount: float = 0.99,
) -> Dict[str, float]:
    """True value of `policy_fn(params, obs, key) -> action` (one observation) on fresh users."""
    return evaluate_policy_per_user(key, env_params, policy_fn, policy_params, num_users, discount)[0]


def evaluate_policy_per_user(
    key: jax.Array,
    env_params,
    policy_fn: Callable,
    policy_params,
    num_users: int = 1024,
    discount: float = 0.99,
) -> Tuple[Dict[str, float], np.ndarray]:
    """`evaluate_policy`'s summary and, from the same rollout, every user's undiscounted return [U].

    Policies scored with the same key meet the same users with the same
    randomness, so their per-user returns can be compared pairwise.
    """
    check_eval_inputs(num_users, discount)
    check_policy(env_params, policy_fn, policy_params)
    traj = rollout(key, env_params, policy_fn, policy_params, num_users)
    per_user = returns(traj, discount)
    stats, user_returns = jax.device_get((_summarise(traj, per_user, env_params), per_user["undiscounted"]))
    return {k: float(v) for k, v in stats.items()}, np.asarray(user_returns)


def agent_policy_fn(agent: common.Agent) -> Callable:
    """policy(state, obs, key) for one observation, from an agent whose act takes a batch."""

    def policy(state, obs, key):
        return agent.act(state, obs[None], key)[0]

    return policy


def make_agent_evaluator(
    agent: common.Agent,
    env_params,
    num_users: int,
    discount: float,
    with_user_returns: bool = False,
) -> Callable:
    """jit(evaluate)(agent_states [S, H], key) -> {metric: [S, H]}; compiled once per shape.

    `with_user_returns`: it returns ({metric: [S, H]}, undiscounted return [S, H, U]
    of every user, from the same rollouts), for paired comparisons.
    """
    check_eval_inputs(num_users, discount)
    policy = agent_policy_fn(agent)

    def one_agent(state, key):
        traj = rollout(key, env_params, policy, state, num_users)
        per_user = returns(traj, discount)
        stats = _summarise(traj, per_user, env_params)
        # Overestimation: the agent's mean-over-critics Q at (s_0, pi(s_0)) vs the true return.
        q0 = jnp.mean(agent.q_values(state, traj.observations[0], traj.actions[0]), axis=0)
        true0 = per_user["discounted"]
        stats["q_estimate_initial"] = jnp.mean(q0)
        stats["true_discounted_initial"] = jnp.mean(true0)
        stats["overestimation"] = jnp.mean(q0 - true0)
        return (stats, per_user["undiscounted"]) if with_user_returns else stats

    def evaluate(agent_states, key):
        # Every run is scored on the same users (common random numbers across seeds and settings).
        axes = common.agent_axes(agent_states)
        over_h = jax.vmap(one_agent, in_axes=(axes, None))
        return jax.vmap(over_h, in_axes=(axes, None))(agent_states, key)

    return jax.jit(evaluate)


def make_eval_fn(env_params, num_users: int, discount: float, seed: int = 12345) -> Callable:
    """The training driver's hook: eval_fn(agent, agent_states, step) -> {metric: [S, H]}.

    The evaluation users are fixed by `seed` (the same users at every step,
    so learning curves are not confounded by which users were drawn).
    """
    check_eval_inputs(num_users, discount)
    cache: Dict[int, Callable] = {}
    key = jax.random.PRNGKey(seed)

    def eval_fn(agent, agent_states, step):
        del step
        evaluator = cache.setdefault(id(agent), make_agent_evaluator(agent, env_params, num_users, discount))
        return evaluator(agent_states, key)

    return eval_fn


def make_policy_evaluator(env_params, policy_fn: Callable, num_users: int, discount: float) -> Callable:
    """jit(evaluate)(key, policy_params) -> `evaluate_policy`'s summary as arrays; vmappable over params.

    For stacks of behaviour policies (progressive training scores every seed's
    exploration policy on the same users in one program).
    """

    def evaluate(key, policy_params):
        traj = rollout(key, env_params, policy_fn, policy_params, num_users)
        return _summarise(traj, returns(traj, discount), env_params)

    return evaluate
