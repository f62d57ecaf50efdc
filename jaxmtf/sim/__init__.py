"""The simulators (MTF sessions; notification days, discrete), rollouts, behaviour policies, static search."""
from jaxmtf.sim.env import (
    KUAIRAND_RATES,
    TASKS,
    EnvParams,
    EnvState,
    act_dim,
    baseline_action,
    click_greedy_action,
    default_params,
    fused_scores,
    fusion_from_action,
    obs_dim,
    observation_layout,
    reset,
    satisfaction_action,
    step,
)
from jaxmtf.sim.envs import ENVIRONMENTS, Environment
from jaxmtf.sim.policies import (
    Policy,
    agent_policy,
    batchrl_mixture,
    bounce_switch_policy,
    box_policy,
    default_switch_params,
    fixed_policy,
    gaussian_policy,
    mixture_policy,
    uniform_policy,
)
from jaxmtf.sim.rollout import Trajectory, evaluate, flatten_valid, returns, rollout
from jaxmtf.sim.static_search import score_actions, search_static_weights
