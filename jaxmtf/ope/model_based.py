"""Model-based OPE: an ensemble of learned dynamics models, rolled out with the target policy.

Each member is one MLP on the (standardised) observation and the action
with three heads (Janner et al. 2019's MBPO models, Paine et al. 2020's
model-based OPE baseline, reduced):

    reward       r ~ N(mu_r, sigma_r^2)                  (Gaussian NLL)
    next obs     s' = s + sd * d,  d ~ N(mu_d, sigma_d^2)  (the standardised change; Gaussian NLL)
    session end  done ~ Bernoulli(sigmoid(l))             (cross-entropy on the dataset's terminals)

Members differ by their seed only (initialisation and batches): the
training driver's seed axis, so the ensemble is ONE compiled program
(`fit_models`: `lifecycle.set_up_runs` + `training.train_runs`, as FQE),
in a resumable run directory `workdir/model_based`.

Evaluation (`rollout`): from every logged first state s_0, the target
policy acts on the model's states for `horizon` steps; the model's MEANS
are followed (no sampling: the estimate is deterministic given the
models), and the session end enters as the probability of still being
there, so

    V_m(s_0) = sum_{t < H} gamma^t  prod_{k < t} (1 - p_done_k)  mu_r,t

(a `lax.scan`, vmapped over members and start states). The estimate is the
mean over members of the mean over start states; the members' spread (std)
is the model's epistemic uncertainty, and the conservative lower bound is
mean - lcb_coef * std (MOPO's penalty by ensemble disagreement, applied to
the value). The rows' interval is mean +- lcb_coef * std: it covers the
models' disagreement, not the sampling of the episodes.
"""
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmtf.agents import common, networks

NAME = "model_based"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@flax.struct.dataclass
class ModelData:
    observations: jax.Array  # [N, obs]
    actions: jax.Array  # [N, A]
    rewards: jax.Array  # [N]
    next_observations: jax.Array  # [N, obs]
    terminals: jax.Array  # [N]


@flax.struct.dataclass
class ModelState:
    params: Any
    opt: Any
    step: jax.Array


class Model(NamedTuple):
    """Agent-like for the driver (init, update) and what the rollout reads (predict)."""

    init: Callable
    update: Callable
    predict: Callable  # (state, obs [..., obs], action [..., A]) -> (reward mean, next obs mean, done probability)
    default_hparams: dict


def model_data(dataset) -> ModelData:
    return ModelData(observations=dataset.observations, actions=dataset.actions, rewards=dataset.rewards,
                     next_observations=dataset.next_observations, terminals=dataset.terminals)


def _stats(x):
    x = np.asarray(x, np.float64)
    return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-3).astype(np.float32)


def make_model(config, dataset) -> Model:
    """config: hidden_dims, learning_rate. The standardisation of observations and of their change is the
    dataset's (constants of the model)."""
    obs_dim, act_dim = dataset.obs_dim, dataset.act_dim
    obs_mean, obs_std = _stats(dataset.observations)
    _, delta_std = _stats(np.asarray(dataset.next_observations) - np.asarray(dataset.observations))
    r_mean, r_std = _stats(np.asarray(dataset.rewards)[:, None])
    net = networks.MLP(tuple(config.hidden_dims), 2 + 2 * obs_dim + 1)
    optimizer = optax.adam(float(config.learning_rate))

    def heads(params, obs, action):
        x = jnp.concatenate([(obs - obs_mean) / obs_std, action], axis=-1)
        out = net.apply(params, x)
        mu_r, log_std_r = out[..., 0], out[..., 1]
        mu_d, log_std_d = out[..., 2:2 + obs_dim], out[..., 2 + obs_dim:2 + 2 * obs_dim]
        clip = lambda s: jnp.clip(s, LOG_STD_MIN, LOG_STD_MAX)  # noqa: E731
        return mu_r, clip(log_std_r), mu_d, clip(log_std_d), out[..., -1]

    def init(key):
        params = net.init(key, jnp.zeros((1, obs_dim + act_dim)))
        return ModelState(params=params, opt=optimizer.init(params), step=jnp.zeros((), jnp.int32))

    def loss_fn(params, batch: ModelData, done_weight):
        mu_r, ls_r, mu_d, ls_d, logit = heads(params, batch.observations, batch.actions)
        r = (batch.rewards - r_mean[0]) / r_std[0]
        d = (batch.next_observations - batch.observations) / delta_std
        nll_r = jnp.mean(0.5 * ((r - mu_r) * jnp.exp(-ls_r)) ** 2 + ls_r)
        nll_d = jnp.mean(0.5 * ((d - mu_d) * jnp.exp(-ls_d)) ** 2 + ls_d)
        bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logit, batch.terminals))
        loss = nll_r + nll_d + done_weight * bce
        return loss, {"reward_nll": nll_r, "next_obs_nll": nll_d, "done_bce": bce}

    def update(state: ModelState, batch: ModelData, key, hparams):
        del key
        params, opt, loss, aux = common.apply_gradients(
            optimizer, lambda p: loss_fn(p, batch, hparams["done_weight"]), state.params, state.opt)
        return ModelState(params=params, opt=opt, step=state.step + 1), {"model_loss": loss, **aux}

    def predict(state: ModelState, obs, action):
        mu_r, _, mu_d, _, logit = heads(state.params, obs, action)
        return mu_r * r_std[0] + r_mean[0], obs + mu_d * delta_std, jax.nn.sigmoid(logit)

    return Model(init, update, predict, {"done_weight": 1.0})


def rollout(predict: Callable, policy: Callable, obs0, key, horizon: int, gamma) -> jax.Array:
    """Discounted return of one start state under a model: predict(obs, action) -> (reward, next obs, p_done),
    policy(obs, key) -> action; obs0 [obs]. The model's means are followed and the session end is a
    continuation probability: sum_t gamma^t prod_{k<t} (1 - p_k) r_t."""

    def body(carry, t):
        obs, alive, ret = carry
        action = policy(obs, jax.random.fold_in(key, t))
        reward, next_obs, p_done = predict(obs, action)
        ret = ret + alive * gamma ** t.astype(jnp.float32) * reward
        return (next_obs, alive * (1.0 - p_done), ret), None

    init = (obs0, jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32))
    (_, _, ret), _ = jax.lax.scan(body, init, jnp.arange(horizon))
    return ret


def member_values(model: Model, states, policy: Callable, obs0, key, horizon: int, gamma) -> jax.Array:
    """[M, E]: every member's return from every start state; states are the driver's [M, 1] (one setting)."""
    axes = common.agent_axes(states)
    keys = jax.random.split(key, obs0.shape[0])

    def one_member(state):
        predict = lambda o, a: model.predict(state, o, a)  # noqa: E731
        return jax.vmap(lambda o, k: rollout(predict, policy, o, k, horizon, gamma))(obs0, keys)

    per_member = jax.vmap(jax.vmap(one_member, in_axes=(axes,)), in_axes=(axes,))(states)  # [M, 1, E]
    return per_member[:, 0]


def summarise(values, lcb_coef: float):
    """values [M, E] -> (mean, member std, lower bound): the mean over members of the mean over start states."""
    per_member = jnp.mean(values, axis=1)
    mean = jnp.mean(per_member)
    std = jnp.std(per_member, ddof=1) if per_member.shape[0] > 1 else jnp.zeros(())
    return mean, std, mean - lcb_coef * std


# Fields that re-time a model run without changing what it computes (a resume may change them).
_RETIMING_FIELDS = ("enabled", "num_updates", "checkpoint_every", "keep_checkpoints", "eval_every", "seed_group_size",
                    "horizon", "lcb_coef", "force_new_run")


def fit_models(config, dataset, workdir: str):
    """The ensemble: config.num_members models (the driver's seeds), trained (or resumed) in `workdir` by the
    training driver's own set-up and loop, as FQE. Returns (model, states [M, 1])."""
    from jaxmtf.core import lifecycle, training  # the driver imports agents: only when a model is fitted
    from jaxmtf.core.run_config import RunGrid
    from jaxmtf.runs import record as record_lib

    model = make_model(config, dataset)
    seeds = [int(config.seed) + i for i in range(int(config.num_members))]
    hparams = {"done_weight": jnp.ones((1,), jnp.float32)}
    meta = {
        "estimator": NAME, "model_based": {k: v for k, v in config.to_dict().items() if k not in _RETIMING_FIELDS},
        "seeds": seeds, "num_transitions": dataset.size,
        "data_fingerprint": record_lib.checksum({
            "observations": dataset.observations, "actions": dataset.actions, "rewards": dataset.rewards,
            "next_observations": dataset.next_observations, "terminals": dataset.terminals})[:16],
    }
    run = lifecycle.set_up_runs(config, workdir, model, RunGrid(seeds, hparams, [{}]), model_data(dataset), meta)
    summary = training.train_runs(run)
    return model, summary["state"].agent
