"""The MTF simulator's hand-written reference policies: the bounce switch and its tuned fusions.

Generic policies (uniform, fixed, agents, noise around a base, mixtures) are in
`jaxmtf.sim.policies`; these know the MTF observation layout and task list.
"""
import jax.numpy as jnp

from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.policies import Policy, _nan_log_prob


def bounce_switch_policy(env_params: sim_env.EnvParams) -> Policy:
    """The hand-written state-dependent policy used to prove the simulator is sequential.

    Probe, then commit: for the first ``probe_steps`` requests play
    ``probe_action`` (click-greedy: it shows clickbait, the only way to learn
    how this user takes it). Afterwards play ``prone_action`` while the
    observed session bounce rate (share of clicks without a long view, averaged
    over the session so far) is below ``bounce_threshold``, else
    ``averse_action``. The session average keeps the probe's evidence, so the
    decision sticks without memory beyond the observation.
    params = dict(probe_action, prone_action, averse_action, bounce_threshold, probe_steps).
    """
    lay = sim_env.observation_layout(env_params)
    pos, T = lay["session_position"].start, env_params.max_steps
    bounce = lay["session_bounce_rate"].start

    def apply(params, obs, key):
        t = obs[pos] * T
        late = jnp.where(obs[bounce] < params["bounce_threshold"], params["prone_action"], params["averse_action"])
        return jnp.where(t < params["probe_steps"] - 0.5, params["probe_action"], late)
    return Policy(apply, _nan_log_prob)


# Found by CEM (static_search) on prone-only (rho ~ Beta(50, 1)) and averse-only
# (rho ~ Beta(1, 50)) users of the default simulator, rounded; see benchmarks/simulator.md.
PRONE_ACTION = (1.0, 0.0, -1.0, -0.5, -0.9, -0.5)  # click first: clickbait pays with these users
AVERSE_ACTION = (-1.0, -0.35, 0.55, -0.75, 1.0, -0.3)  # no click weight, interactions: avoids clickbait


def default_switch_params(env_params: sim_env.EnvParams) -> dict:
    """Start on the prone fusion (it shows some clickbait: the probe), keep it while the
    session bounce rate stays under 0.2, else the averse fusion (benchmarks/simulator.md)."""
    if env_params.task_names != sim_env.TASKS:
        raise ValueError("default_switch_params is tuned for the default 6 tasks")
    pad = (-1.0,) * (sim_env.act_dim(env_params) - env_params.num_tasks)  # power_bias: smallest biases
    prone, averse = jnp.asarray(PRONE_ACTION + pad, jnp.float32), jnp.asarray(AVERSE_ACTION + pad, jnp.float32)
    return dict(probe_action=prone, prone_action=prone, averse_action=averse,
                bounce_threshold=jnp.float32(0.2), probe_steps=jnp.float32(0.0))
