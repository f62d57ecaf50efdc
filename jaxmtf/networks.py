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


def uniform_init(scale: float):
    """U(-scale, scale): rlkit's init of the last layer (init_w = 1e-3)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


class TanhGaussianActor(nn.Module):
    """rlkit's TanhGaussianPolicy: returns (mean, log_std) of the pre-tanh Gaussian.

    The action is tanh(mean + std * eps); `jaxmtf.agents.common`'s
    tanh_gaussian_* functions sample it and give its log density. The mean
    and log-std heads start at U(-init_w, init_w) as in rlkit.
    """

    hidden_dims: Sequence[int]
    act_dim: int
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    init_w: float = 1e-3

    @nn.compact
    def __call__(self, obs: jax.Array):
        h = obs
        for width in self.hidden_dims:
            h = nn.relu(nn.Dense(width, kernel_init=torch_linear_init)(h))
        head = lambda: nn.Dense(self.act_dim, kernel_init=uniform_init(self.init_w), bias_init=uniform_init(self.init_w))
        mean = head()(h)
        log_std = jnp.clip(head()(h), self.log_std_min, self.log_std_max)
        return mean, log_std


class VAE(nn.Module):
    """The conditional VAE of BCQ (sfujim/BCQ) and BEAR/UWAC: a generative model of a | s.

    Encoder 750-750 -> (mean, log_std) of z, log_std clamped to [-4, 15] for
    numerical stability; decoder 750-750 -> tanh action. Sampling from the
    prior clips z ~ N(0, I) to [-0.5, 0.5], as both references do.
    """

    act_dim: int
    latent_dim: int
    hidden_dims: Sequence[int] = (750, 750)

    def setup(self):
        self.encoder = MLP(self.hidden_dims, 2 * self.latent_dim)
        self.decoder = MLP(self.hidden_dims, self.act_dim)

    def __call__(self, obs, action, key):
        """Reconstruction, z mean and z std, for the VAE loss."""
        mean, log_std = jnp.split(self.encoder(jnp.concatenate([obs, action], -1)), 2, axis=-1)
        std = jnp.exp(jnp.clip(log_std, -4.0, 15.0))
        z = mean + std * jax.random.normal(key, std.shape)
        return self.decode(obs, z), mean, std

    def decode(self, obs, z):
        return jnp.tanh(self.decoder(jnp.concatenate([obs, z], -1)))

    def sample(self, obs, key):
        """Actions decoded from the clipped prior, one per observation row."""
        z = jnp.clip(jax.random.normal(key, obs.shape[:-1] + (self.latent_dim,)), -0.5, 0.5)
        return self.decode(obs, z)
