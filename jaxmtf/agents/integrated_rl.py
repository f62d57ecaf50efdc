"""IntegratedRL-MTF (Liu et al., Tencent, arXiv 2404.17589; "UnifiedRL" from its v6).

The offline RL model is integrated with the known online exploration policy
that logged its data. That policy explores a small box around the deployed
policy mu_bp,

    mu_ep(s) = mu_bp(s) + U(-eps, eps) per dimension,   eps = 0.15,

so the data covers the box around mu_bp(s) and inside it the critic is
trusted. Every collector that explores around a policy logs its centre
mu_bp(s) with the data (`Dataset.behaviour_centre`); the agent reads it, at s
for the actor and at s' for the target. With G critic groups g (the paper's
two: watch time and the other behaviours, each with its own reward r_g), M
critics Q_gj per group, each with its own target critic Q'_gj:

    excess(x, c)  = max(|x - c| - eps, 0)                     per dimension; zero inside the box
    d(x, c)       = sum_d exp(excess_d / s) - 1               zero inside, exponential outside
    phi(x, c)     = exp(-kappa sum_d excess_d)                1 inside, decaying outside
    actor loss    = mean_B [ -sum_g w_g mean_j Q_gj(s, mu(s)) + eta d(mu(s), mu_bp(s))
                             + lambda sum_g w_g std_j Q_gj(s, mu(s)) ]
    y_gj          = r_g + gamma phi(mu'(s'), mu_bp(s')) (1 - done) Q'_gj(s', mu'(s'))
    critic loss   = sum_gj mean_B (Q_gj(s, a) - y_gj)^2

The target action is the target actor's deterministic mu'(s') (no
smoothing noise) and each critic bootstraps from its own target, as the
paper writes its target. gamma = 0.9 as the paper.

What the paper leaves open (the forms of d and phi, eta, lambda, w_g; the
optimiser and network sizes) are choices, each a config field
(jaxmtf/configs/integrated_rl.py):

- d sums the per-dimension exponential over the action's dimensions with a
  length scale s (`penalty_scale`, 0.03 in action units): a gradient of
  eta / s at the box's face that grows e-fold every s outside it, so the
  actor is held within about s of the box whatever the Q term's scale
  (beyond 20 s it continues linearly, so float32 never overflows);
- phi decays in the L1 excess with rate kappa (`discount_decay`);
- the disagreement is the population std over a group's members;
- the rest is TD3's (sfujim/TD3 defaults: policy delay 2, tau 0.005, Adam
  3e-4, 256-256), since the paper's model is a deterministic actor-critic;
- q_values (OPE, overestimation) reports member j's total value
  sum_g Q_gj: the groups' rewards partition the total reward.

The earlier reading of the paper stays reachable, one config field per
choice, for the ablations (jaxmtf/configs/integrated_rl.py `variant`s):
the box around the logged action (`box_anchor` "logged_action"), a quadratic
penalty averaged over dimensions (`penalty_shape` "quadratic"), TD3's target
smoothing (`policy_noise`) with the min over the ensemble (`target_reduction`
"min"), and TD3+BC's lambda = alpha / mean|Q| on the Q term (`q_scaling`
"td3_bc").

Reference: no public implementation exists; this follows the paper as
restated by notes written from its PDF, and DESIGN.md.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf import schema
from jaxmtf.agents import common, td3
from jaxmtf.sim import policies

HPARAMS = td3.HPARAMS + ("alpha", "box_weight", "discount_decay", "disagreement_weight")
BOX_ANCHORS = ("centre", "logged_action")
PENALTY_SHAPES = ("exponential", "quadratic")
TARGET_REDUCTIONS = ("own", "min", "mean")
Q_SCALINGS = ("none", "td3_bc")
# Past this many length scales the exponential penalty continues linearly (float32 stays finite).
_EXP_LINEAR_FROM = 20.0


def _group_matrix(value) -> bool:
    """() for one group (the scalar reward), else G >= 1 rows of per-task weights of one length."""
    try:
        rows = [tuple(float(x) for x in row) for row in value]
    except TypeError:
        return False
    return all(len(r) == len(rows[0]) > 0 for r in rows) and all(np.isfinite(x) for r in rows for x in r)


def _weights(value) -> bool:
    try:
        return all(np.isfinite(float(x)) for x in value)
    except TypeError:
        return False


# The agent's fields (jaxmtf/configs/integrated_rl.py documents each): TD3's, and its own.
CONFIG_FIELDS = {
    **td3.CONFIG_FIELDS,
    "num_critics": schema.integer(2),  # per group; the disagreement needs two members at least
    "box_half_width": schema.real(0),
    "box_anchor": schema.choice(BOX_ANCHORS),
    "penalty_shape": schema.choice(PENALTY_SHAPES),
    "penalty_scale": schema.real(0, lo_open=True),
    "alpha": schema.real(0),
    "box_weight": schema.real(0),
    "discount_decay": schema.real(0),
    "disagreement_weight": schema.real(0),
    "target_reduction": schema.choice(TARGET_REDUCTIONS),
    "q_scaling": schema.choice(Q_SCALINGS),
    "reward_groups": schema.Field(_group_matrix, "() or rows of per-task reward weights, one row per critic group"),
    "group_weights": schema.Field(_weights, "() (all 1) or one actor weight w_g per critic group"),
}


def transition_fields(agent_config) -> dict:
    """The batch fields the agent trains on (the driver adds them: agents.transition_fields)."""
    logged = agent_config.box_anchor == "logged_action"
    return {"next_actions": logged, "centres": not logged, "task_responses": len(agent_config.reward_groups) > 0}


def check_dataset(agent_config, dataset, error_cls) -> None:
    """The reward groups weigh the dataset's tasks: one weight per task."""
    groups = agent_config.reward_groups
    if len(groups) and dataset.task_responses is not None and len(groups[0]) != dataset.task_responses.shape[1]:
        raise error_cls(f"config field 'agent.reward_groups': rows of {len(groups[0])} task weights, but the dataset "
                        f"has {dataset.task_responses.shape[1]} tasks {tuple(dataset.task_names)}")


# ----------------------------------------------------------------- the exploration policy


def exploration_policy(act_fn, half_width: float = 0.15, mode: str = "clip") -> policies.Policy:
    """mu_ep(s) = clip(mu_bp(s) + U(-w, w), -1, 1) around a deterministic act_fn(state, obs[B], key).

    params = {"base": the agent state}. `mode` "clip" is the paper's literal
    clip (its log-density has atoms on the faces, see sim.policies);
    "truncate" samples the box cut to [-1, 1] (a Lebesgue density). Its
    `centre` is mu_bp(s), logged with the data.
    """
    base = policies.agent_policy(lambda state, obs, key: act_fn(state, obs[None], key)[0])
    return policies.box_policy(base, half_width=half_width, mode=mode)


# ----------------------------------------------------------------- losses


def box_excess(x, centre, half_width):
    """max(|x - c| - w, 0) per dimension: how far x lies outside the box of half-width w around c."""
    chex.assert_equal_shape([x, centre])
    return jax.nn.relu(jnp.abs(x - centre) - half_width)


def exponential_penalty(excess, scale):
    """d = sum_d exp(e_d / s) - 1 per row: zero inside the box, exponential outside (linear past 20 s)."""
    z = excess / scale
    head = jnp.exp(jnp.minimum(z, _EXP_LINEAR_FROM))
    tail = np.exp(_EXP_LINEAR_FROM) * jax.nn.relu(z - _EXP_LINEAR_FROM)  # the tangent, past the switch
    return jnp.sum(head + tail - 1.0, axis=-1)


def box_penalty(pi, centre, half_width, shape="exponential", scale=0.03):
    """mean_B d(pi(s), c(s)): "exponential" (the paper's) or "quadratic" (mean_d excess^2, the earlier reading)."""
    excess = box_excess(pi, centre, half_width)
    if shape == "exponential":
        return jnp.mean(exponential_penalty(excess, scale))
    return jnp.mean(excess ** 2)


def decayed_discount(a_t, next_centres, half_width, discount, decay):
    """gamma phi = gamma exp(-kappa sum_d excess(a_t, c')_d); gamma where c' is NaN (no next row logged).

    Bootstrapping from an action the data does not cover counts for less,
    the further it leaves the box around the next state's centre.
    """
    excess = jnp.sum(box_excess(a_t, jnp.nan_to_num(next_centres), half_width), axis=-1)
    excess = jnp.where(jnp.any(jnp.isnan(next_centres), axis=-1), 0.0, excess)
    return discount * jnp.exp(-decay * excess)


def group_rewards(batch, reward_groups):
    """r [G, B]: the scalar reward (no groups) or each group's weighted task responses."""
    if not len(reward_groups):
        return batch.rewards[None]
    weights = jnp.asarray(reward_groups, jnp.float32)  # [G, K]
    chex.assert_axis_dimension(batch.task_responses, 1, weights.shape[1])
    return weights @ batch.task_responses.T


def integrated_target(actor_target_fn, critic_target_fn, batch, key, hparams, half_width, num_groups,
                      reduction="own", anchor="centre", reward_groups=()):
    """y_gj = r_g + gamma phi (1 - d) Q'_gj(s', a_t), flattened to [G * M, B]; aux: the mean effective discount.

    a_t = mu'(s') plus TD3's clipped smoothing noise when policy_noise > 0 (0 is the paper's);
    `reduction` "own": each critic its own target; "min" / "mean": one value per group for all its members.
    """
    next_centres = batch.next_centres if anchor == "centre" else batch.next_actions
    if next_centres is None:
        field = "next_centres" if anchor == "centre" else "next_actions"
        raise ValueError(f"IntegratedRL-MTF's target needs batch.{field}: build the batch with "
                         "Dataset.as_transitions(**agents.transition_fields(config)) (the training driver does)")
    chex.assert_equal_shape([batch.actions, next_centres])
    noise = jax.random.normal(key, batch.actions.shape) * hparams["policy_noise"]
    a_t = td3.smoothed_target_action(actor_target_fn(batch.next_observations), noise, hparams["noise_clip"])
    q_t = critic_target_fn(batch.next_observations, a_t)  # [G * M, B]
    q_t = q_t.reshape(num_groups, -1, q_t.shape[-1])
    if reduction == "min":
        q_t = jnp.broadcast_to(jnp.min(q_t, axis=1, keepdims=True), q_t.shape)
    elif reduction == "mean":
        q_t = jnp.broadcast_to(jnp.mean(q_t, axis=1, keepdims=True), q_t.shape)
    discount_t = decayed_discount(a_t, next_centres, half_width, hparams["discount"], hparams["discount_decay"])
    chex.assert_equal_shape([discount_t, batch.rewards])
    r_t = group_rewards(batch, reward_groups)  # [G, B]
    y = jax.lax.stop_gradient(r_t[:, None] + (discount_t * (1.0 - batch.terminals))[None, None] * q_t)
    live = 1.0 - batch.terminals
    effective = jnp.sum(discount_t * live) / jnp.maximum(jnp.sum(live), 1.0)
    return y.reshape(-1, y.shape[-1]), {"effective_discount": effective}


def grouped_critic_loss(q_fn, batch, y):
    """sum over every member gj of mean_B (Q_gj(s, a) - y_gj)^2; q_fn -> [G * M, B], y [G * M, B]."""
    q_tm1 = q_fn(batch.observations, batch.actions)
    chex.assert_equal_shape([q_tm1, y])
    return jnp.sum(jnp.mean((q_tm1 - y) ** 2, axis=-1)), q_tm1


def ensemble_disagreement(q_pi, axis=0):
    """The population std over the ensemble axis of Q(s, pi(s))."""
    var = jnp.var(q_pi, axis=axis)
    # jnp.std's gradient is NaN where the members agree exactly (sqrt at 0); the double where keeps it 0.
    positive = var > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)


def integrated_actor_loss(q_pi, pi, centre, hparams, half_width, group_weights, penalty_shape="exponential",
                          penalty_scale=0.03, q_scaling="none"):
    """mean_B [-sum_g w_g mean_j Q_gj + eta d(pi, c) + lambda sum_g w_g std_j Q_gj]; q_pi [G, M, B].

    q_scaling "td3_bc" multiplies the Q terms by alpha / mean_B |sum_g w_g mean_j Q_gj| (no gradient).
    """
    chex.assert_rank(q_pi, 3)
    chex.assert_equal_shape([pi, centre])
    w = jnp.asarray(group_weights, jnp.float32)[:, None]  # [G, 1]
    mu = jnp.sum(w * jnp.mean(q_pi, axis=1), axis=0)  # [B]
    sd = jnp.sum(w * ensemble_disagreement(q_pi, axis=1), axis=0)  # [B]
    scale = (jax.lax.stop_gradient(hparams["alpha"] / jnp.mean(jnp.abs(mu))) if q_scaling == "td3_bc"
             else jnp.float32(1.0))
    penalty = box_penalty(pi, centre, half_width, penalty_shape, penalty_scale)
    loss = scale * jnp.mean(-mu + hparams["disagreement_weight"] * sd) + hparams["box_weight"] * penalty
    outside = jnp.mean(jnp.any(box_excess(pi, centre, half_width) > 0.0, axis=-1))
    return loss, {"q_scale": scale, "box_penalty": penalty, "q_disagreement": jnp.mean(sd), "outside_box": outside}


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    half_width = float(config.box_half_width)
    if not 0.0 <= half_width <= 2.0:
        raise ValueError(f"config field 'agent.box_half_width': must be in [0, 2], got {half_width}")
    if config.target_reduction not in TARGET_REDUCTIONS:
        raise ValueError(f"config field 'agent.target_reduction': {config.target_reduction!r} "
                         f"not in {TARGET_REDUCTIONS}")
    if int(config.num_critics) < 2:
        raise ValueError(f"config field 'agent.num_critics': the disagreement needs >= 2 critics, "
                         f"got {config.num_critics}")
    reward_groups = tuple(tuple(float(x) for x in row) for row in config.reward_groups)
    num_groups = max(len(reward_groups), 1)
    group_weights = tuple(float(x) for x in config.group_weights) or (1.0,) * num_groups
    if len(group_weights) != num_groups:
        raise ValueError(f"config field 'agent.group_weights': {len(group_weights)} weights for {num_groups} "
                         "critic groups (agent.reward_groups)")
    anchor, members = config.box_anchor, int(config.num_critics)

    def target_fn(actor_target_fn, critic_target_fn, batch, key, hparams):
        return integrated_target(actor_target_fn, critic_target_fn, batch, key, hparams, half_width, num_groups,
                                 config.target_reduction, anchor, reward_groups)

    def objective_fn(actor_fn, critic_fn, batch, hparams, actor_loss_fn, q1_fn):
        del actor_loss_fn, q1_fn  # the objective is over every group's members
        pi = actor_fn(batch.observations)
        q_pi = critic_fn(batch.observations, pi).reshape(num_groups, members, -1)
        centre = batch.centres if anchor == "centre" else batch.actions
        return integrated_actor_loss(q_pi, pi, centre, hparams, half_width, group_weights, config.penalty_shape,
                                     float(config.penalty_scale), config.q_scaling)

    # The family's ensemble holds every group's members: G * M critics in one nn.vmap.
    family_config = config.copy_and_resolve_references()
    family_config.num_critics = num_groups * members
    agent = td3.make_td3_family(family_config, obs_dim, act_dim, None, HPARAMS, target_fn=target_fn,
                                objective_fn=objective_fn, critic_loss_fn=grouped_critic_loss)

    def q_values(state, obs, action):
        """Member j's value of the total reward: sum_g Q_gj, [M, B]."""
        q = agent.q_values(state, obs, action)
        return q.reshape(num_groups, members, *q.shape[1:]).sum(axis=0)

    return agent._replace(q_values=q_values)
