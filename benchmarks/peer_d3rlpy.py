"""Peer baseline: training throughput of d3rlpy 2.8.1 (PyTorch, CPU) on TD3+BC, CQL and BCQ.

`measure` builds the d3rlpy algorithm with the network sizes, learning rates
and sample counts of our reference configs (launch/configs/{td3_bc,cql,bcq}.py),
so that one d3rlpy update does the same work as one of ours, and returns its
gradient updates per second. benchmarks/throughput.py divides by it.

Only `algo.update(batch)` is timed. Mini-batches (uniform, with replacement)
are drawn into a pool before the clock starts and cycled through, so the number
measures the learner, not d3rlpy's replay-buffer sampler (which builds one
Python Transition object per sample and would dominate at these sizes).
`update` still converts the numpy batch to torch tensors every call: that is
d3rlpy's own API cost and stays in. Each result lists, as `deviations`, every
place where d3rlpy cannot be set to the reference's values and what it does
instead (read from d3rlpy's algos/qlearning/{td3_plus_bc,cql,bcq}.py and
torch/*_impl.py).
"""
import itertools
import os

import d3rlpy
import numpy as np
import torch
from timing import best_rate

PEER = f"d3rlpy {d3rlpy.__version__}"
POOL_SIZE, WARMUP_UPDATES = 50, 10  # warm-up is even: TD3+BC alternates critic-only and full updates

_MLP = d3rlpy.models.VectorEncoderFactory  # plain ReLU MLP: no batch/layer norm, no dropout

_BOTH_CRITICS = ("The actor loss runs both critics forward on (s, pi(s)) and keeps Q1; the reference evaluates "
                 "Q1 only (one extra critic forward, no backward, per actor step).")

DEVIATIONS = {
    "td3_bc": [_BOTH_CRITICS],
    "cql": [
        "No policy_eval_start: d3rlpy has no behaviour-cloning phase, every update is the SAC+CQL one "
        "(what the reference does after its first 40k updates).",
        "The conservative penalty recomputes Q_i(s, a_data) instead of reusing the TD loss's values "
        "(one extra forward and backward of both critics on the batch).",
        "Deterministic backup uses the policy's mean action tanh(mu(s')), not a sample a' ~ pi(.|s') "
        "(same cost: one policy pass on s').",
        "The actor step follows the critic step and goes through the updated critics "
        "(ours: the pre-update ones); same cost.",
        "The temperature loss is -alpha * (log pi - |A|), differentiated through alpha = exp(log alpha) "
        "(reference: through log alpha); same cost.",
        "The policy's log-std is clamped to [-20, 2] (reference: [-5, 2]).",
        "Weights use torch's default init, not rlkit's fan-in init (bias 0.1, outputs U(+-3e-3)), and the "
        "target critics start as copies of the critics; no effect on cost.",
    ],
    "bcq": [
        "n_action_samples=10 also sets the candidates per state when acting (reference: 100); acting is "
        "not timed.",
        _BOTH_CRITICS,
        "The VAE decoder has no tanh: d3rlpy's VAEDecoder returns its raw linear output under its default "
        "with_squash=True, so reconstructions and sampled actions are unbounded until the perturbation's "
        "clamp to [-1, 1] (reference: max_action * tanh).",
        "update_actor_interval is not read by d3rlpy's BCQ: the actor and the targets are updated every "
        "step regardless (as the reference does).",
    ],
}


def make_config(algo: str, act_dim: int, batch_size: int):
    """The d3rlpy config matching our reference config of `algo` (scalers default to None: off)."""
    if algo == "td3_bc":  # sfujim/TD3_BC
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_encoder_factory=_MLP(hidden_units=[256, 256]), critic_encoder_factory=_MLP(hidden_units=[256, 256]),
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=batch_size, gamma=0.99, tau=0.005,
            n_critics=2, target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2)
    if algo == "cql":  # aviralkumar2907/CQL, Gym MuJoCo setting
        return d3rlpy.algos.CQLConfig(
            actor_encoder_factory=_MLP(hidden_units=[256] * 3), critic_encoder_factory=_MLP(hidden_units=[256] * 3),
            actor_learning_rate=1e-4, critic_learning_rate=3e-4,
            temp_learning_rate=1e-4, initial_temperature=1.0,  # automatic entropy tuning at the policy lr
            # No Lagrange: a zero lr leaves alpha' without optimiser (no extra loss or step), alpha' = 1 and
            # a zero threshold make the penalty exactly min_q_weight * (logsumexp - Q_data).
            alpha_learning_rate=0.0, initial_alpha=1.0, alpha_threshold=0.0, conservative_weight=5.0,
            n_action_samples=10, soft_q_backup=False, max_q_backup=False,
            batch_size=batch_size, gamma=0.99, tau=0.005, n_critics=2)
    if algo == "bcq":  # sfujim/BCQ
        return d3rlpy.algos.BCQConfig(
            imitator_encoder_factory=_MLP(hidden_units=[750, 750]),  # VAE encoder and decoder; latent 2 * act_dim
            actor_encoder_factory=_MLP(hidden_units=[400, 300]), critic_encoder_factory=_MLP(hidden_units=[400, 300]),
            actor_learning_rate=1e-3, critic_learning_rate=1e-3, imitator_learning_rate=1e-3,
            beta=0.5,  # VAE loss = recon MSE + 0.5 * KL, both means: the reference's
            batch_size=batch_size, gamma=0.99, tau=0.005, n_critics=2, lam=0.75, action_flexibility=0.05,
            n_action_samples=10, update_actor_interval=1, rl_start_step=0)
    raise ValueError(f"unknown algo {algo!r}: expected td3_bc, cql or bcq")


def measure(algo: str, observations, actions, rewards, next_observations, terminals, batch_size: int,
            window_seconds: float, seed: int = 0) -> dict:
    """d3rlpy's updates/s on `algo` with the reference's per-update work: the best of 3 windows."""
    torch.set_num_threads(os.cpu_count())
    d3rlpy.seed(seed)
    obs_dim, act_dim = observations.shape[1], actions.shape[1]
    learner = make_config(algo, act_dim, batch_size).create(device="cpu:0")
    learner.create_impl((obs_dim,), act_dim)  # the networks and optimisers, without `fit`

    # The pool, in the TransitionMiniBatch layout d3rlpy's own sampler produces.
    rng = np.random.default_rng(seed)
    f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)
    pool = []
    for _ in range(POOL_SIZE):
        idx = rng.integers(0, len(observations), size=batch_size)
        pool.append(d3rlpy.dataset.TransitionMiniBatch(
            observations=f32(observations[idx]), actions=f32(actions[idx]),
            rewards=f32(rewards[idx]).reshape(-1, 1), next_observations=f32(next_observations[idx]),
            next_actions=np.zeros_like(f32(actions[idx])),  # read only by SARSA-style algorithms, not these
            terminals=f32(terminals[idx]).reshape(-1, 1), intervals=np.ones((batch_size, 1), np.float32),
            transitions=[]))

    for i in range(WARMUP_UPDATES):
        learner.update(pool[i % POOL_SIZE])
    counter = itertools.count()
    timed = best_rate(lambda: learner.update(pool[next(counter) % POOL_SIZE]), 1.0, window_seconds)
    return {"peer": PEER, "algo": algo, "batch_size": batch_size, "updates_per_s": timed["rate"],
            "timed_updates": timed["steps"], "timed_seconds": timed["seconds"], "deviations": list(DEVIATIONS[algo])}


if __name__ == "__main__":
    import json

    # The shapes of benchmarks/throughput.py: 100k transitions, obs 32, act 10.
    rng = np.random.default_rng(0)
    n, obs_dim, act_dim = 100_000, 32, 10
    data = dict(
        observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        actions=rng.uniform(-1.0, 1.0, (n, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=(rng.random(n) < 0.01).astype(np.float32))
    for algo, batch_size in (("td3_bc", 256), ("cql", 256), ("bcq", 100)):
        print(json.dumps(measure(algo, **data, batch_size=batch_size, window_seconds=2.0), indent=1), flush=True)
