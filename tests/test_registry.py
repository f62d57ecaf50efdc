"""One place to plug in a simulator: every name its registry entry lists is served by collection and OPE."""
import jax
import numpy as np
import pytest

from jaxmtf.configs import ope as ope_configs
from jaxmtf.configs.collect import base as collect_base
from jaxmtf.data import collect
from jaxmtf.ope import targets
from jaxmtf.sim import registry

ENTRIES = sorted(registry.ENVIRONMENTS.items())


@pytest.mark.parametrize("name,entry", ENTRIES)
def test_every_listed_pipeline_is_accepted_and_has_a_behaviour(name, entry):
    params = entry.default_params()
    assert registry.of(params) is entry and registry.named(name) is entry
    for pipeline in entry.pipelines:
        config = collect_base.get_base_config(pipeline)
        config.simulator = name
        collect.validate_config(config)  # accepted for this simulator
        if pipeline in collect._ONLINE_PIPELINES:  # trains an online agent: test_collect runs those
            continue
        policy, policy_params, description = collect.behaviour(config, params, jax.random.PRNGKey(0))
        obs = jax.eval_shape(lambda: entry.reset(jax.random.PRNGKey(1), params)[0])
        # Traced, not run: the policy takes this simulator's observation and gives its kind of action.
        action = jax.eval_shape(lambda o: policy.apply(policy_params, o, jax.random.PRNGKey(2)), obs)
        if entry.num_actions(params):
            assert action.shape == () and np.issubdtype(action.dtype, np.integer), (pipeline, action)
        else:
            assert action.shape == (entry.act_dim(params),) and action.dtype == np.float32, (pipeline, action)
        assert description, pipeline


@pytest.mark.parametrize("name,entry", ENTRIES)
def test_a_pipeline_of_another_simulator_is_refused_naming_the_simulator(name, entry):
    other = next(p for e in registry.ENVIRONMENTS.values() for p in e.pipelines if p not in entry.pipelines)
    config = collect_base.get_base_config(other)
    config.simulator = name
    with pytest.raises(collect.ConfigError, match=f"config field 'pipeline': got '{other}'.*simulator '{name}'"):
        collect.validate_config(config)


@pytest.mark.parametrize("name,entry", ENTRIES)
def test_every_listed_named_policy_loads_for_ope(name, entry):
    params = entry.default_params()
    for policy_name in entry.named_policies:
        if entry.num_actions(params):
            group = targets.named_discrete_policy(policy_name, params, entry.num_actions(params))
        else:
            group = targets.named_policy(policy_name, params, ope_configs.get_config(), entry.act_dim(params))
        assert group.size == 1 and group.labels[0]["source"] == policy_name
        obs = jax.eval_shape(lambda: entry.reset(jax.random.PRNGKey(1), params)[0])
        one = jax.tree.map(lambda x: x[0], group.params)
        action = jax.eval_shape(lambda o: group.policy.apply(one, o, jax.random.PRNGKey(2)), obs)
        assert action.shape == (() if entry.num_actions(params) else (entry.act_dim(params),)), (policy_name, action)
