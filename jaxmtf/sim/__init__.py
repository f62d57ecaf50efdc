"""The simulators (MTF sessions; notification days, discrete), rollouts, behaviour policies, static search."""
from jaxmtf.sim.mtf.env import (
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
from jaxmtf.sim.mtf.policies import bounce_switch_policy, default_switch_params
from jaxmtf.sim.mtf.static_search import score_actions, search_static_weights
from jaxmtf.sim.policies import (
    Policy,
    agent_policy,
    batchrl_mixture,
    box_policy,
    fixed_policy,
    gaussian_policy,
    mixture_policy,
    uniform_policy,
)
from jaxmtf.sim.registry import ENVIRONMENTS, Environment
from jaxmtf.sim.rollout import Trajectory, evaluate, flatten_valid, returns, rollout
