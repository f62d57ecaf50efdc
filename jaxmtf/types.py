"""Shared pytrees and type aliases.

A `Dataset` is D4RL-shaped: one row per transition, every field has the
transition axis first. Actions are continuous fusion vectors [N, act_dim] in
[-1, 1], or discrete choices [N] int32 in [0, num_actions) (the
notification simulator's "how many today"); the dtype and `num_actions` say
which, and the agent must match (run_config.check_action_space). It is a pytree, so it can be put on device whole and
indexed inside a compiled program.
"""
from typing import Any, Callable, Dict, Optional, Tuple

import flax.struct
import jax
import numpy as np

Array = jax.Array
PRNGKey = jax.Array
Params = Any
Metrics = Dict[str, Array]

# A policy anywhere (behaviour, learned, baseline): policy(params, obs, key) -> action.
PolicyFn = Callable[[Params, Array, PRNGKey], Array]
# The density of a stochastic policy: log_prob(params, obs, action) -> log density.
LogProbFn = Callable[[Params, Array, Array], Array]


@flax.struct.dataclass
class Transition:
    """One batch of transitions, as the agents' update steps see it."""

    observations: Array  # [B, obs_dim]
    actions: Array  # [B, act_dim] floats in [-1, 1]; discrete datasets: [B] int32 in [0, num_actions)
    rewards: Array  # [B]
    next_observations: Array  # [B, obs_dim]
    terminals: Array  # [B], 1.0 where the episode ended (no bootstrap)
    # [B, act_dim] the logged action at s_t (the episode's next row), NaN where the dataset has none
    # (the episode's last row); only for agents that ask for it (IntegratedRL-MTF's decayed discount).
    next_actions: Optional[Array] = None
    # [B, act_dim] the exploration policy's deterministic centre mu_bp(s_tm1) and mu_bp(s_t) (NaN where
    # the next state has no logged row); only for agents that ask for them (IntegratedRL-MTF's trusted box).
    centres: Optional[Array] = None
    next_centres: Optional[Array] = None
    # [B, K] the step's raw per-task counts; only for agents that ask (IntegratedRL-MTF's critic groups).
    task_responses: Optional[Array] = None


def logged_next_actions(actions: np.ndarray, episode_ids: np.ndarray, terminals: np.ndarray) -> np.ndarray:
    """The action logged at each transition's next state: row i + 1's, when it continues row i's episode.

    NaN where it does not (a terminal row, an episode's last logged row, the dataset's last row).
    Needs the D4RL layout's rows ordered by episode then time (every jaxmtf pipeline writes it).
    """
    actions, episode_ids = np.asarray(actions, np.float32), np.asarray(episode_ids)
    out = np.full_like(actions, np.nan)
    continues = (episode_ids[1:] == episode_ids[:-1]) & (np.asarray(terminals)[:-1] < 0.5)
    out[:-1][continues] = actions[1:][continues]
    return out


@flax.struct.dataclass
class Dataset:
    """A logged offline dataset, in the layout of D4RL.

    `terminals` marks true ends of the MDP (no bootstrap from the next state);
    `timeouts` marks episodes cut short without ending (the value of the next
    state still counts, so agents bootstrap through them).

    The rule for simulator datasets: the session position is observed, so
    the horizon is part of the MDP and a session that reaches it ends for
    real; both departures and horizon ends are terminals and `timeouts` is
    all zero (sim.rollout.logged_end_flags). `timeouts` keeps its meaning
    for imported datasets whose truncations are not terminal (Minari's
    `truncations`).
    """

    observations: Array  # [N, obs_dim] float
    actions: Array  # [N, act_dim] float in [-1, 1]; discrete: [N] int32 in [0, num_actions)
    rewards: Array  # [N] float
    next_observations: Array  # [N, obs_dim] float
    terminals: Array  # [N] float, 0 or 1
    timeouts: Array  # [N] float, 0 or 1
    episode_ids: Array  # [N] int
    behaviour_log_prob: Optional[Array] = None  # [N] float, log density of the logged action
    task_responses: Optional[Array] = None  # [N, K] float, raw per-task counts of the step
    # [N, act_dim] float in [-1, 1]: the deterministic centre mu_bp(s) that the behaviour explored
    # around at this row (box or Gaussian around a policy: IntegratedRL-MTF's trusted box). Continuous only.
    behaviour_centre: Optional[Array] = None
    task_names: Tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
    # 0: continuous actions; n >= 2: discrete actions 0..n-1 (the sidecar records n).
    num_actions: int = flax.struct.field(pytree_node=False, default=0)

    @property
    def is_discrete(self) -> bool:
        return self.num_actions > 0

    @property
    def size(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[-1])

    @property
    def act_dim(self) -> int:
        """The action width the agents are built with: num_actions for a discrete dataset (a Q head per action)."""
        return self.num_actions if self.is_discrete else int(self.actions.shape[-1])

    def as_transitions(self, next_actions: bool = False, centres: bool = False,
                       task_responses: bool = False) -> Transition:
        """The fields the agents train on, plus the optional ones an agent asks for (TRANSITION_FIELDS).

        `next_actions`: the logged next action (`logged_next_actions`); `centres`: the behaviour's
        centre at s and at s' (the same rule: the next row's centre); `task_responses`: the per-task counts.
        """
        if centres and self.behaviour_centre is None:
            raise ValueError("dataset field 'behaviour_centre': missing, but the agent asks for the exploration "
                             "centre (collect with a box or Gaussian-around-a-policy behaviour)")
        if task_responses and self.task_responses is None:
            raise ValueError("dataset field 'task_responses': missing, but the agent asks for per-task responses")
        return Transition(
            observations=self.observations,
            actions=self.actions,
            rewards=self.rewards,
            next_observations=self.next_observations,
            terminals=self.terminals,
            next_actions=logged_next_actions(self.actions, self.episode_ids, self.terminals) if next_actions else None,
            centres=self.behaviour_centre if centres else None,
            next_centres=(logged_next_actions(self.behaviour_centre, self.episode_ids, self.terminals)
                          if centres else None),
            task_responses=self.task_responses if task_responses else None,
        )


REQUIRED_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
    "episode_ids",
)
OPTIONAL_FIELDS = ("behaviour_log_prob", "task_responses", "behaviour_centre")


def to_numpy(dataset: Dataset) -> Dict[str, np.ndarray]:
    """The array fields of a dataset as a dict of numpy arrays (absent optionals left out)."""
    out = {}
    for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
        value = getattr(dataset, name)
        if value is not None:
            out[name] = np.asarray(value)
    return out
