"""Network modules shared by the agents.

Initialisation follows PyTorch's `nn.Linear` default for the weights,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), because the reference implementations
(sfujim/TD3, TD3_BC, BCQ, rlkit CQL) are PyTorch and rely on it. Deviation:
biases start at zero (flax bias initialisers do not see fan_in).
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class MLP(nn.Module):
    """Dense layers with an activation between them, none after the last."""

    hidden_dims: Sequence[int]
    output_dim: int
    activation: Callable = nn.relu
    dropout_rate: float = 0.0  # MC-dropout after each hidden layer (UWAC); 0 = off

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        for width in self.hidden_dims:
            x = self.activation(nn.Dense(width, kernel_init=torch_linear_init)(x))
            if self.dropout_rate > 0.0:
                x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        return nn.Dense(self.output_dim, kernel_init=torch_linear_init)(x)


class DeterministicActor(nn.Module):
    """pi(s) = max_action * tanh(MLP(s)), the TD3 / DDPG / TD3+BC actor."""

    hidden_dims: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden_dims, self.act_dim)(obs))


class Critic(nn.Module):
    """Q(s, a) = MLP([s, a]), a scalar per transition."""

    hidden_dims: Sequence[int]
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, deterministic: bool = True) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_dims, 1, dropout_rate=self.dropout_rate)(x, deterministic)[..., 0]


class EnsembleCritic(nn.Module):
    """`num_critics` independent critics in one module: outputs [num_critics, ...].

    Built with `nn.vmap`, so the ensemble is one batched matmul per layer, not
    a Python loop; twin Q (TD3) is an ensemble of 2, DDPG of 1.
    """

    hidden_dims: Sequence[int]
    num_critics: int = 2
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, deterministic: bool = True) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_dims, self.dropout_rate)(obs, action, deterministic)
