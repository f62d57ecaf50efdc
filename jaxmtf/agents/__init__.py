"""Offline RL agents, one module per algorithm, built by `make_agent(config, obs_dim, act_dim)`."""
import importlib

from absl import logging

from jaxmtf import schema
from jaxmtf.agents.common import Agent

# config.algo -> module under jaxmtf.agents. DDPG is a TD3 config (one critic,
# no smoothing, no delay), as sfujim's OurDDPG is TD3 without its three tricks.
ALGORITHMS = {
    "td3": "td3",
    "ddpg": "td3",
    "td3_bc": "td3_bc",
    "bcq": "bcq",
    "cql": "cql",
    "uwac": "uwac",
    "iql": "iql",
    "integrated_rl": "integrated_rl",
    # Discrete actions (datasets of integer actions, e.g. the notification simulator's).
    # Double DQN is a DQN config (double_q), as d3rlpy's DoubleDQN differs from DQN in the target only.
    "dqn": "dqn",
    "double_dqn": "dqn",
    "cql_dqn": "cql_dqn",
    "bcq_discrete": "bcq_discrete",
}


def make_agent(config, obs_dim: int, act_dim: int) -> Agent:
    """Builds the agent named by `config.algo` from `config.agent`."""
    if config.algo not in ALGORITHMS:
        raise ValueError(f"config field 'algo': unknown algorithm {config.algo!r} (known: {sorted(ALGORITHMS)})")
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[config.algo]}")
    return module.make_agent(config.agent, obs_dim, act_dim)


def check_agent_config(config, error_cls) -> None:
    """Every field of `config.agent` against its module's CONFIG_FIELDS (and CONFIG_RULES); raises error_cls.

    Nothing is built: the driver calls this before make_agent.
    """
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[config.algo]}")
    schema.check_fields(config.agent, module.CONFIG_FIELDS, "agent.", error_cls)
    schema.check_rules(config.agent, getattr(module, "CONFIG_RULES", ()), "agent.", error_cls)


def agent_field(algo: str, name: str):
    """The spec of agent field `name` of `algo` (None if it has none): the sweep checks its values with it."""
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[algo]}")
    return module.CONFIG_FIELDS.get(name)


TRANSITION_FIELDS = ("next_actions", "centres", "task_responses")


def transition_fields(config) -> dict:
    """The optional batch fields the agent trains on, as `Dataset.as_transitions` keywords.

    An agent module declares them with `transition_fields(agent_config) -> {name: bool}`
    (names from TRANSITION_FIELDS); without one, none.
    """
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[config.algo]}")
    declared = getattr(module, "transition_fields", None)
    wanted = declared(config.agent) if declared is not None else {}
    return {name: bool(wanted.get(name, False)) for name in TRANSITION_FIELDS}


def check_dataset(config, dataset, error_cls) -> None:
    """Refuses, naming the field, a dataset that lacks a field the agent trains on (before anything is built)."""
    fields = transition_fields(config)
    if fields["centres"] and dataset.behaviour_centre is None:
        raise error_cls(
            f"dataset field 'behaviour_centre': missing, but {config.algo} (agent.box_anchor='centre') trusts the "
            "box around the exploration centre logged with the data; collect with a box or Gaussian-around-a-"
            "policy behaviour, or set agent.box_anchor='logged_action' (the logged action as the centre)")
    if fields["task_responses"] and dataset.task_responses is None:
        raise error_cls(f"dataset field 'task_responses': missing, but {config.algo}'s critic groups "
                        "(agent.reward_groups) are scored from the per-task responses")
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[config.algo]}")
    check = getattr(module, "check_dataset", None)
    if check is not None:
        check(config.agent, dataset, error_cls)


def run_length_warnings(config) -> None:
    """Warns when a run is too short for its agent's warm-up (see each module's `run_length_warning`)."""
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[config.algo]}")
    check = getattr(module, "run_length_warning", None)
    if check is not None:
        message = check(config.agent, int(config.num_updates))
        if message:
            logging.warning("%s", message)


def is_discrete(algo: str) -> bool:
    """Whether the algorithm acts on discrete actions (its module sets DISCRETE); continuous otherwise."""
    module = importlib.import_module(f"jaxmtf.agents.{ALGORITHMS[algo]}")
    return bool(getattr(module, "DISCRETE", False))
