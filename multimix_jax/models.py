"""MultiMix network: encoder, classifier head and saliency-bridged decoder (docs/multimix.md,
Architecture). Modules only: losses live in ``losses.py``, the training step in ``steps.py``.

All tensors are NHWC. The parameter tree is ``{'encoder', 'classifier', 'decoder'}``; with
the default widths (16, 32, 64, 128, 256) and the bridge it holds exactly 1,965,155
parameters, as the original.

Mixed precision (``config.model.dtype='bfloat16'``): convolutions, activations, resizing and
dropout run in ``dtype``; parameters stay float32 (``param_dtype``), InstanceNorm computes its
statistics and the normalisation in float32, and both heads return float32 logits, so losses,
gradients w.r.t. the input (the saliency) and the optimizer state are float32.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from multimix_jax import resize

DEFAULT_WIDTHS = (16, 32, 64, 128, 256)
# PyTorch's default conv/linear weight init (kaiming_uniform, a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
BRIDGE_SCALE = 1.0 / 8.0  # concat(x, s) is shrunk 256 -> 32 to meet the first decoder stage.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
    """``config.model.dtype`` ('float32' | 'bfloat16') as a jnp dtype."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.dtype={name!r} is not supported; use one of "
                         f"{sorted(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]


class Dropout(nn.Module):
    """Element-wise dropout, as ``nn.Dropout``: keep with probability 1 - rate, scale by
    1 / (1 - rate). When 256 (1 - rate) is a whole number (the default 0.25 gives 192) the
    keep mask compares 8-bit draws, four cut from each 32-bit word of random bits, with it:
    the same Bernoulli mask from a quarter of the random bits, which on CPU cost as much as
    a convolution layer (docs/speed.md). Other rates use ``nn.Dropout``'s draw."""

    rate: float

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, deterministic: bool) -> jnp.ndarray:
        keep_in_256 = 256 * (1.0 - self.rate)
        if deterministic or self.rate == 0.0 or keep_in_256 != round(keep_in_256):
            return nn.Dropout(self.rate, deterministic=deterministic)(x)
        count = math.prod(x.shape)
        words = jax.random.bits(self.make_rng("dropout"), ((count + 3) // 4,), jnp.uint32)
        draws = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:count]
        keep = draws.reshape(x.shape) < int(keep_in_256)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x)).astype(x.dtype)


class ConvBlock(nn.Module):
    """conv3x3 -> InstanceNorm -> LeakyReLU(0.2), twice, then element-wise Dropout."""

    features: int
    dropout_rate: float = 0.25
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        for _ in range(2):
            x = nn.Conv(self.features, (3, 3), padding=1, kernel_init=torch_default_kernel_init,
                        dtype=self.dtype)(x)
            # InstanceNorm2d(affine=False): per image and channel, biased variance, eps 1e-5;
            # statistics and normalisation in float32 (flax promotes), output in ``dtype``.
            x = nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False,
                                use_fast_variance=False, dtype=self.dtype)(x)
            x = nn.leaky_relu(x, negative_slope=0.2)
        return Dropout(self.dropout_rate)(x, deterministic=not train)


class Encoder(nn.Module):
    """Five ConvBlocks, each followed by 2x2 max-pool; returns (skips c1..c5, pooled c5)."""

    widths: Sequence[int] = DEFAULT_WIDTHS
    dropout_rate: float = 0.25
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool):
        skips = []
        x = x.astype(self.dtype)
        for features in self.widths:
            x = ConvBlock(features, self.dropout_rate, self.dtype)(x, train=train)
            skips.append(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return tuple(skips), x


class ClassifierHead(nn.Module):
    """Global average pool of the pooled c5, then Dense(num_classes) logits (in float32)."""

    num_classes: int = 2

    @nn.compact
    def __call__(self, pooled: jnp.ndarray) -> jnp.ndarray:
        return nn.Dense(self.num_classes, kernel_init=torch_default_kernel_init)(
            pooled.astype(jnp.float32).mean(axis=(1, 2)))


class Decoder(nn.Module):
    """U-Net decoder; ``bridge`` (x ++ saliency at 1/8 size) joins the FIRST stage only.
    Returns float32 logits."""

    widths: Sequence[int] = DEFAULT_WIDTHS
    dropout_rate: float = 0.25
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, skips: Sequence[jnp.ndarray], bridge: jnp.ndarray | None, *,
                 train: bool) -> jnp.ndarray:
        x = skips[-1]
        for stage, skip in enumerate(reversed(skips[:-1])):
            parts = [resize.upsample2x(x), skip]
            if stage == 0 and bridge is not None:
                parts.append(bridge.astype(self.dtype))
            x = ConvBlock(skip.shape[-1], self.dropout_rate, self.dtype)(
                jnp.concatenate(parts, axis=-1), train=train)
        # the final 1x1 conv (the logits) in float32 whatever the compute dtype
        return nn.Conv(1, (1, 1), kernel_init=torch_default_kernel_init, dtype=jnp.float32)(
            x.astype(jnp.float32))


class MultiMix(nn.Module):
    """Encoder + classifier + decoder. Call the methods through ``apply(..., method=...)``.

    ``use_bridge=False`` gives the UMTL / U-Net decoder (no saliency channels); ``dtype`` is
    the compute dtype (float32 parameters and logits either way); ``saliency_float32`` keeps
    the saliency's encoder pass in float32 under bfloat16 (see ``classify``).
    """

    widths: Sequence[int] = DEFAULT_WIDTHS
    dropout_rate: float = 0.25
    num_classes: int = 2
    use_bridge: bool = True
    dtype: Any = jnp.float32
    saliency_float32: bool = True

    def setup(self):
        self.encoder = Encoder(self.widths, self.dropout_rate, self.dtype)
        self.classifier = ClassifierHead(self.num_classes)
        self.decoder = Decoder(self.widths, self.dropout_rate, self.dtype)

    def encode(self, images: jnp.ndarray, *, train: bool):
        """(skips, logits) for NHWC images."""
        skips, pooled = self.encoder(images, train=train)
        return skips, self.classifier(pooled)

    def classify(self, images: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Class logits; the ones the saliency differentiates. With ``saliency_float32`` they
        are computed by a float32 copy of the encoder on the same parameters, whatever
        ``dtype``: a bfloat16 input gradient correlates only ~0.8 with the float32 one."""
        if not self.saliency_float32 or self.dtype == jnp.float32 or self.is_initializing():
            return self.encode(images, train=train)[1]
        full = self.clone(parent=None, dtype=jnp.float32)
        rngs = {"dropout": self.make_rng("dropout")} if train else {}
        return full.apply({"params": self.variables["params"]}, images, train=train, rngs=rngs,
                          method=MultiMix.encode)[1]

    def decode(self, images: jnp.ndarray, saliency: jnp.ndarray | None, skips, *,
               train: bool) -> jnp.ndarray:
        """Per-pixel segmentation logits (N, H, W, 1) from the skips and the bridge."""
        bridge = None
        if self.use_bridge:
            bridge = resize.scale_by(jnp.concatenate([images, saliency], axis=-1).astype(
                self.dtype), BRIDGE_SCALE)
        return self.decoder(skips, bridge, train=train)

    def __call__(self, images: jnp.ndarray, saliency: jnp.ndarray | None = None, *,
                 train: bool = False):
        """Both heads at once (used by ``init``): returns (seg_logits, class_logits)."""
        skips, logits = self.encode(images, train=train)
        if saliency is None and self.use_bridge:
            saliency = jnp.zeros_like(images)
        return self.decode(images, saliency, skips, train=train), logits


def build_model(model_config) -> MultiMix:
    """MultiMix from ``config.model`` (widths, dropout_rate, use_bridge, dtype,
    saliency_float32)."""
    return MultiMix(widths=tuple(model_config.widths), dropout_rate=model_config.dropout_rate,
                    use_bridge=model_config.use_bridge,
                    dtype=compute_dtype(model_config.get("dtype", "float32")),
                    saliency_float32=model_config.get("saliency_float32", True))


def init_params(model: MultiMix, rng: jax.Array, image_size: int):
    """Explicit parameter pytree for single-channel ``image_size`` squares."""
    dummy = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    return model.init(rng, dummy, train=False)["params"]


def count_params(params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
