"""Network modules shared by the agents, with the references' initialisations said at construction.

Every Dense layer takes a `LayerInit`: a function (fan_in, fan_out) ->
(kernel_init, bias_init), because PyTorch's and rlkit's schemes draw biases
from a bound that depends on the layer's fan-in, which a flax bias
initialiser (called with the bias shape only) cannot see.

- `torch_linear` (the default): PyTorch's `nn.Linear`, weight and bias
  U(+-1/sqrt(fan_in)). The references of TD3, TD3+BC, BCQ and the BEAR/UWAC
  VAE are PyTorch modules with this default.
- `rlkit_hidden` and `rlkit_output(init_w)`: rlkit's `Mlp` (CQL, UWAC),
  hidden weights by `ptu.fanin_init`, biases 0.1, output layer U(+-init_w).
- `orthogonal(scale)`: ikostrikov/implicit_q_learning's `default_init`
  (IQL), orthogonal weights of gain sqrt(2) on every layer, biases 0.
"""
import math
from typing import Callable, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]
LayerInit = Callable[[int, int], Tuple[Initializer, Initializer]]


def uniform(bound: float) -> Initializer:
    """U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_linear(fan_in: int, fan_out: int):
    """PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)) weight = U(+-1/sqrt(fan_in)), bias the same."""
    del fan_out
    bound = 1.0 / math.sqrt(fan_in)
    return uniform(bound), uniform(bound)


def rlkit_hidden(fan_in: int, fan_out: int):
    """rlkit's hidden layers: ptu.fanin_init weight, bias filled with 0.1.

    fanin_init takes its bound from size[0] of torch's [out, in] weight, the
    number of OUTPUT features (rlkit's quirk, kept: U(+-1/16) for 256 units
    whatever the input).
    """
    del fan_in
    return uniform(1.0 / math.sqrt(fan_out)), nn.initializers.constant(0.1)


def rlkit_output(init_w: float) -> LayerInit:
    """rlkit's last layers: weight and bias U(+-init_w) (3e-3 for Q-functions, 1e-3 for policy heads)."""
    return lambda fan_in, fan_out: (uniform(init_w), uniform(init_w))


def orthogonal(scale: float = math.sqrt(2.0)) -> LayerInit:
    """Orthogonal weights with gain `scale`, biases 0 (flax's Dense default): the IQL reference's default_init."""
    return lambda fan_in, fan_out: (nn.initializers.orthogonal(scale), nn.initializers.zeros)


def dense(x: jax.Array, width: int, layer_init: LayerInit, spectral_norm: bool = False, update_stats: bool = False):
    """One Dense layer of the calling compact module, initialised by `layer_init` from x's width.

    With `spectral_norm` the kernel is divided by its largest singular value,
    estimated by one power iteration per call from the `u` vector kept in the
    "batch_stats" collection (torch.nn.utils.spectral_norm's n_power_iterations
    1); `update_stats` stores the iterated vector, as torch does in train mode.
    Initialise such a module with `init_with_raw_kernels`.
    """
    kernel_init, bias_init = layer_init(x.shape[-1], width)
    layer = nn.Dense(width, kernel_init=kernel_init, bias_init=bias_init)
    if spectral_norm:
        return nn.SpectralNorm(layer, n_steps=1)(x, update_stats=update_stats)
    return layer(x)


def init_with_raw_kernels(module: nn.Module, key, *inputs):
    """`module.init(key, *inputs)`, with the initialisers' raw kernels where spectral norm is on.

    flax's SpectralNorm writes the NORMALISED kernel back into "params" at
    init (its map_variables is mutable there), where torch keeps the raw init
    as weight_orig and divides by sigma in every forward. The forward is the
    same either way (W / sigma(W) is scale-free), but Adam's steps and polyak
    averages act on the stored scale: rlkit's last layer at U(+-3e-3) would
    start ~100x larger. So the params come from the same module without
    spectral norm and the same key (the same values before normalisation),
    the u vectors ("batch_stats") from the spectral-norm init.
    """
    variables = module.init(key, *inputs)
    if getattr(module, "spectral_norm", False):
        variables = {**variables, "params": module.clone(spectral_norm=False).init(key, *inputs)["params"]}
    return variables


DROPOUT_MASKS = ("threefry", "hash")


def _lowbias32(x: jax.Array) -> jax.Array:
    """Wellons' lowbias32 (the 0x21f0aaad / 0x735a2d97 variant): a 32-bit integer bijection whose
    every input bit flips each output bit with probability ~1/2."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x21F0AAAD)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x735A2D97)
    return x ^ (x >> 15)


def hashed_keep_mask(key: jax.Array, shape, keep_prob: float) -> Tuple[jax.Array, float]:
    """Bernoulli(keep) dropout masks from a counter hash: (mask, the keep probability they have).

    One threefry draw per mask tensor (two 32-bit seeds), then two rounds of lowbias32 over the
    element counters, each 32-bit hash giving two 16-bit uniforms. The keep probability is
    round(keep * 65536) / 65536 (0.899994 for the usual 0.9), returned so that the kept units are
    scaled by its inverse and the layer stays unbiased. A dropout mask needs independent fair bits,
    not a cryptographic stream; threefry's 20 rounds per 32 bits made UWAC's 100 MC-dropout passes
    bound by random-number generation on a CPU (benchmarks/README.md).
    """
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    size = math.prod(shape)
    counters = jnp.arange((size + 1) // 2, dtype=jnp.uint32)
    hashed = _lowbias32(_lowbias32(counters ^ seeds[0]) + seeds[1])
    uniforms = jnp.stack([hashed & jnp.uint32(0xFFFF), hashed >> 16], axis=-1).reshape(-1)[:size]
    threshold = round(keep_prob * 65536)
    return (uniforms < threshold).reshape(shape), threshold / 65536


class Dropout(nn.Module):
    """Inverted dropout with `rate`, masks from threefry (flax's nn.Dropout) or `hashed_keep_mask`."""

    rate: float
    masks: str = "threefry"

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if self.masks == "threefry":
            return nn.Dropout(self.rate)(x, deterministic=deterministic)
        if deterministic:
            return x
        keep, keep_prob = hashed_keep_mask(self.make_rng("dropout"), x.shape, 1.0 - self.rate)
        return jnp.where(keep, x / keep_prob, 0.0)


class MLP(nn.Module):
    """Dense layers with an activation between them, none after the last."""

    hidden_dims: Sequence[int]
    output_dim: int
    activation: Callable = nn.relu
    dropout_rate: float = 0.0  # MC-dropout after each hidden activation (UWAC); 0 = off
    dropout_masks: str = "threefry"  # the masks' generator, one of DROPOUT_MASKS (see Dropout)
    hidden_init: LayerInit = torch_linear
    output_init: LayerInit = torch_linear
    spectral_norm: bool = False  # on every layer, the output too (UWAC's FlattenDropout_Mlp)

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True, update_stats: bool = False) -> jax.Array:
        for width in self.hidden_dims:
            x = self.activation(dense(x, width, self.hidden_init, self.spectral_norm, update_stats))
            if self.dropout_rate > 0.0:
                x = Dropout(self.dropout_rate, self.dropout_masks)(x, deterministic=deterministic)
        return dense(x, self.output_dim, self.output_init, self.spectral_norm, update_stats)


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
    hidden_init: LayerInit = torch_linear
    output_init: LayerInit = torch_linear
    spectral_norm: bool = False
    dropout_masks: str = "threefry"  # one of DROPOUT_MASKS (see Dropout)

    @nn.compact
    def __call__(self, obs, action, deterministic: bool = True, update_stats: bool = False) -> jax.Array:
        if not 0.0 <= self.dropout_rate < 1.0:  # e.g. EnsembleCritic(dims, 2): num_critics is keyword-only in use
            raise ValueError(f"critic dropout_rate must be in [0, 1), got {self.dropout_rate}")
        x = jnp.concatenate([obs, action], axis=-1)
        mlp = MLP(self.hidden_dims, 1, dropout_rate=self.dropout_rate, dropout_masks=self.dropout_masks,
                  hidden_init=self.hidden_init, output_init=self.output_init, spectral_norm=self.spectral_norm)
        return mlp(x, deterministic, update_stats)[..., 0]


class EnsembleCritic(Critic):
    """`num_critics` independent critics in one module: outputs [num_critics, ...].

    Built with `nn.vmap`, so the ensemble is one batched matmul per layer, not
    a Python loop; twin Q (TD3) is an ensemble of 2, DDPG of 1. Each member
    has its own parameters, dropout masks and spectral-norm vectors; the
    other fields are the members' (Critic's).
    """

    num_critics: int = 2

    @nn.compact
    def __call__(self, obs, action, deterministic: bool = True, update_stats: bool = False) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        critic = ensemble(*self._member_fields())
        return critic(obs, action, deterministic, update_stats)

    @nn.nowrap
    def _member_fields(self) -> tuple:
        return (self.hidden_dims, self.dropout_rate, self.hidden_init, self.output_init, self.spectral_norm,
                self.dropout_masks)

    @nn.nowrap  # a helper of the unbound module: it applies another module, it binds no variables itself
    def member_apply(self, variables, index: int, obs, action) -> jax.Array:
        """Q_index(s, a) [B] of one member alone (deterministic): its own forward pass, not the ensemble's."""
        member = Critic(*self._member_fields())
        sliced = {collection: jax.tree.map(lambda x: x[index], tree["VmapCritic_0"])
                  for collection, tree in variables.items()}
        return member.apply(sliced, obs, action)


class TanhGaussianActor(nn.Module):
    """rlkit's TanhGaussianPolicy: returns (mean, log_std) of the pre-tanh Gaussian.

    The action is tanh(mean + std * eps); `jaxmtf.agents.common`'s
    tanh_gaussian_* functions sample it and give its log density. Hidden
    layers start as rlkit's (`rlkit_hidden`), the mean and log-std heads at
    U(-init_w, init_w).
    """

    hidden_dims: Sequence[int]
    act_dim: int
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    init_w: float = 1e-3
    hidden_init: LayerInit = rlkit_hidden

    @nn.compact
    def __call__(self, obs: jax.Array):
        h = obs
        for width in self.hidden_dims:
            h = nn.relu(dense(h, width, self.hidden_init))
        mean = dense(h, self.act_dim, rlkit_output(self.init_w))
        log_std = jnp.clip(dense(h, self.act_dim, rlkit_output(self.init_w)), self.log_std_min, self.log_std_max)
        return mean, log_std


class TanhMeanGaussianActor(nn.Module):
    """IQL's policy (the reference's NormalTanhPolicy with state_dependent_std=False,
    tanh_squash_distribution=False): N(tanh(MLP(s)), diag(exp(log_std))^2).

    The mean is squashed, the distribution is not (a data action on the box's
    edge has a finite density, no atanh); log_std is one learned vector for
    all states, starting at 0 and clipped to [log_std_min, log_std_max].
    Returns (mean, log_std), log_std broadcast to the mean's shape.
    """

    hidden_dims: Sequence[int]
    act_dim: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    layer_init: LayerInit = orthogonal()

    @nn.compact
    def __call__(self, obs: jax.Array):
        h = obs
        for width in self.hidden_dims:
            h = nn.relu(dense(h, width, self.layer_init))
        mean = jnp.tanh(dense(h, self.act_dim, self.layer_init))
        log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)


class ValueNet(nn.Module):
    """V(s) = MLP(s), a scalar per state (IQL's value function)."""

    hidden_dims: Sequence[int]
    layer_init: LayerInit = torch_linear

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, 1, hidden_init=self.layer_init, output_init=self.layer_init)(obs)[..., 0]


class VAE(nn.Module):
    """The conditional VAE of BCQ (sfujim/BCQ) and BEAR/UWAC: a generative model of a | s.

    Encoder 750-750 -> (mean, log_std) of z, log_std clamped to [-4, 15] for
    numerical stability; decoder 750-750 -> tanh action. Sampling from the
    prior clips z ~ N(0, I) to [-0.5, 0.5], as both references do. Layers are
    torch nn.Linear in both references (`torch_linear`).
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
        return jnp.tanh(self.decode_raw(obs, z))

    def decode_raw(self, obs, z):
        """The decoder's pre-tanh output (BEAR/UWAC's MMD compares these)."""
        return self.decoder(jnp.concatenate([obs, z], -1))

    def prior(self, obs, key):
        """z ~ N(0, I) clipped to [-0.5, 0.5], one per observation row."""
        return jnp.clip(jax.random.normal(key, obs.shape[:-1] + (self.latent_dim,)), -0.5, 0.5)

    def sample(self, obs, key):
        """Actions decoded from the clipped prior, one per observation row."""
        return self.decode(obs, self.prior(obs, key))

    def sample_raw(self, obs, key):
        """Pre-tanh decoder outputs at prior draws (what BEAR/UWAC's MMD compares)."""
        return self.decode_raw(obs, self.prior(obs, key))


class DiscreteCritic(nn.Module):
    """Q(s, .) = MLP(s): one value per discrete action, [..., num_actions] (d3rlpy's DiscreteMeanQFunction).

    d3rlpy's default for vector states: the VectorEncoder's Dense-ReLU layers,
    then a Linear to the actions, all torch nn.Linear (`torch_linear`).
    """

    hidden_dims: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        return MLP(self.hidden_dims, self.num_actions)(obs)


class EnsembleDiscreteCritic(DiscreteCritic):
    """`num_critics` independent discrete critics in one module (`nn.vmap`): [num_critics, ..., num_actions]."""

    num_critics: int = 1

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        ensemble = nn.vmap(DiscreteCritic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
                           out_axes=0, axis_size=self.num_critics)
        return ensemble(self.hidden_dims, self.num_actions)(obs)
