"""IntegratedRL-MTF (Liu et al., Tencent, arXiv 2404.17589; "UnifiedRL" in its later versions).

The offline RL model is integrated with the known online exploration policy
that logged its data. That policy explores a small box around the current
(deployed) policy,

    pi_explore(s) = clip(pi_current(s) + U(-eps, eps), -1, 1),   eps = 0.15,

so the data covers the box around every logged action, and inside it the
critic is trusted: the constraint is relaxed to the box instead of a
behaviour-cloning pull to the logged action. With B a batch, a the logged
action at s, a' the logged action at s' (the episode's next row), Q_1..Q_N a
critic ensemble and Q'_i their targets:

    excess_w(x, a)  = max(|x - a| - w, 0)                        per dimension
    P_box(s, a)     = mean_d excess_w(pi(s), a)_d^2              zero inside the box
    mu(s, x), sd(s, x) = mean and std over i of Q_i(s, x)
    actor loss      = -lambda mean_B [mu(s, pi(s)) - beta sd(s, pi(s))] + rho mean_B P_box(s, a),
                      lambda = alpha / mean_B |mu(s, pi(s))|     (no gradient through lambda)
    a_t             = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)     (TD3's smoothing)
    gamma_t         = gamma * exp(-kappa * sum_d excess_w(a_t, a')_d)      gamma where a' is unknown
    y               = r + gamma_t (1 - d) min_i Q'_i(s', a_t)
    critic loss     = sum_i mean_B (Q_i(s, a) - y)^2

gamma = 0.9 as the paper. Everything else is TD3's (sfujim/TD3 defaults:
delay 2, tau 0.005, smoothing 0.2 / 0.5, Adam 3e-4, 256-256), because the
paper's model is a deterministic actor-critic.

Reference: no public implementation exists; this follows the issue's (and
DESIGN.md's) reading of the paper's method: the box exploration policy, an
actor penalty zero inside the exploration box and growing outside it, a
critic target whose discount decays outside the box, a critic-ensemble
disagreement penalty, progressive rounds (jaxmtf/progressive.py). The
paper's method section was not available to this implementation, so the
exact forms below are choices, each a config field:

- the box is centred on the LOGGED action (the data's support around a
  logged a is [a - eps, a + eps] up to the centre's own offset), so the agent
  trains on any dataset, not only on one whose exploration centre is known;
- the penalty is quadratic outside the box (`box_weight` rho, sweepable) and
  averaged over dimensions as TD3+BC's F.mse_loss, so with eps = 0 and
  beta = 0 this agent is TD3+BC with an ensemble (the tests check this);
- the Q term is scaled by TD3+BC's lambda = alpha / mean|Q| (alpha 2.5), which
  makes rho and beta scale-free;
- the discount decays exponentially in the L1 excess of the target action
  beyond the box around the next logged action (`discount_decay` kappa,
  sweepable; 0 = plain gamma);
- the disagreement is the population std over the members (`disagreement
  weight` beta, sweepable), the target the min over all members
  (`target_reduction`: "min", or "mean" for a less pessimistic ensemble).
"""
import chex
import jax
import jax.numpy as jnp

from jaxmtf import schema
from jaxmtf.agents import common, td3
from jaxmtf.sim import policies

HPARAMS = td3.HPARAMS + ("alpha", "box_weight", "discount_decay", "disagreement_weight")

# The agent's fields (launch/configs/integrated_rl.py documents each): TD3's, and its own.
CONFIG_FIELDS = {
    **td3.CONFIG_FIELDS,
    "num_critics": schema.integer(2),  # the disagreement needs two members at least
    "box_half_width": schema.real(0),
    "alpha": schema.real(0),
    "box_weight": schema.real(0),
    "discount_decay": schema.real(0),
    "disagreement_weight": schema.real(0),
    "target_reduction": schema.choice(("min", "mean")),
}
# The training driver adds the logged next action to every batch (Transition.next_actions).
NEEDS_NEXT_ACTIONS = True
TARGET_REDUCTIONS = ("min", "mean")


# ----------------------------------------------------------------- the exploration policy


def exploration_policy(act_fn, half_width: float = 0.15, mode: str = "clip") -> policies.Policy:
    """pi_explore(s) = clip(pi(s) + U(-w, w), -1, 1) around a deterministic act_fn(state, obs[B], key).

    params = {"base": the agent state}. `mode` "clip" is the paper's literal
    clip (its log-density has atoms on the faces, see sim.policies);
    "truncate" samples the box cut to [-1, 1] (a Lebesgue density).
    """
    base = policies.agent_policy(lambda state, obs, key: act_fn(state, obs[None], key)[0])
    return policies.box_policy(base, half_width=half_width, mode=mode)


# ----------------------------------------------------------------- losses


def box_excess(x, a, half_width):
    """max(|x - a| - w, 0) per dimension: how far x lies outside the box of half-width w around a."""
    chex.assert_equal_shape([x, a])
    return jax.nn.relu(jnp.abs(x - a) - half_width)


def box_penalty(pi, a, half_width):
    """P_box = mean over batch and dimensions of excess_w(pi(s), a)^2: zero inside the box, quadratic outside."""
    return jnp.mean(box_excess(pi, a, half_width) ** 2)


def decayed_discount(a_t, next_actions, half_width, discount, decay):
    """gamma_t = gamma * exp(-kappa * sum_d excess_w(a_t, a')_d); gamma where a' is NaN (not logged).

    Bootstrapping from an action the data does not cover counts for less,
    the further it leaves the box around the next logged action.
    """
    excess = jnp.sum(box_excess(a_t, jnp.nan_to_num(next_actions), half_width), axis=-1)
    excess = jnp.where(jnp.any(jnp.isnan(next_actions), axis=-1), 0.0, excess)
    return discount * jnp.exp(-decay * excess)


def integrated_target(actor_target_fn, critic_target_fn, batch, key, hparams, half_width, reduction="min"):
    """y = r + gamma_t (1 - d) reduce_i Q'_i(s', a_t), a_t TD3's smoothed target action, gamma_t decayed."""
    if batch.next_actions is None:
        raise ValueError(
            "IntegratedRL-MTF's target needs batch.next_actions: build the batch with "
            "Dataset.as_transitions(next_actions=True) (the training driver does, for agents with NEEDS_NEXT_ACTIONS)"
        )
    chex.assert_equal_shape([batch.actions, batch.next_actions])
    noise = jax.random.normal(key, batch.actions.shape) * hparams["policy_noise"]
    a_t = td3.smoothed_target_action(actor_target_fn(batch.next_observations), noise, hparams["noise_clip"])
    q_t = critic_target_fn(batch.next_observations, a_t)
    v_t = common.clipped_double_q(q_t) if reduction == "min" else jnp.mean(q_t, axis=0)
    discount_t = decayed_discount(a_t, batch.next_actions, half_width, hparams["discount"], hparams["discount_decay"])
    chex.assert_equal_shape([discount_t, batch.rewards])
    return common.td_target(batch.rewards, discount_t, batch.terminals, v_t)


def ensemble_disagreement(q_pi):
    """sd(s, pi(s)): the population std over the ensemble (axis 0) of Q_i(s, pi(s)), [N, B] -> [B]."""
    chex.assert_rank(q_pi, 2)
    var = jnp.var(q_pi, axis=0)
    # jnp.std's gradient is NaN where the members agree exactly (sqrt at 0); the double where keeps it 0.
    positive = var > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)


def integrated_actor_loss(q_pi, pi, batch, hparams, half_width):
    """-lambda mean [mu - beta sd] + rho P_box, lambda = alpha / mean|mu| (no gradient); q_pi [N, B]."""
    chex.assert_rank(q_pi, 2)
    chex.assert_equal_shape([pi, batch.actions])
    mu, sd = jnp.mean(q_pi, axis=0), ensemble_disagreement(q_pi)
    lmbda = jax.lax.stop_gradient(hparams["alpha"] / jnp.mean(jnp.abs(mu)))
    penalty = box_penalty(pi, batch.actions, half_width)
    loss = -lmbda * jnp.mean(mu - hparams["disagreement_weight"] * sd) + hparams["box_weight"] * penalty
    outside = jnp.mean(jnp.any(box_excess(pi, batch.actions, half_width) > 0.0, axis=-1))
    return loss, {"lambda": lmbda, "box_penalty": penalty, "q_disagreement": jnp.mean(sd), "outside_box": outside}


def ensemble_actor_objective(actor_fn, critic_fn, batch, hparams, actor_loss_fn):
    """actor_loss_fn(Q_1..N(s, pi(s)), pi(s), batch, hparams): the whole ensemble, for its disagreement."""
    pi = actor_fn(batch.observations)
    return actor_loss_fn(critic_fn(batch.observations, pi), pi, batch, hparams)


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    half_width = float(config.box_half_width)
    if not 0.0 <= half_width <= 2.0:
        raise ValueError(f"config field 'agent.box_half_width': must be in [0, 2], got {half_width}")
    if config.target_reduction not in TARGET_REDUCTIONS:
        raise ValueError(f"config field 'agent.target_reduction': {config.target_reduction!r} not in {TARGET_REDUCTIONS}")
    if int(config.num_critics) < 2:
        raise ValueError(f"config field 'agent.num_critics': the disagreement needs >= 2 critics, got {config.num_critics}")

    def target_fn(actor_target_fn, critic_target_fn, batch, key, hparams):
        return integrated_target(actor_target_fn, critic_target_fn, batch, key, hparams, half_width,
                                 config.target_reduction)

    def actor_loss_fn(q_pi, pi, batch, hparams):
        return integrated_actor_loss(q_pi, pi, batch, hparams, half_width)

    return td3.make_td3_family(config, obs_dim, act_dim, actor_loss_fn, HPARAMS, target_fn=target_fn,
                               objective_fn=ensemble_actor_objective)
