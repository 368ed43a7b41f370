import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimix_jax import models, resize
from multimix_jax.saliency import saliency_map
from tests.conftest import tiny_config


def test_default_widths_give_the_papers_parameter_count():
    model = models.MultiMix()
    params = models.init_params(model, jax.random.PRNGKey(0), 32)
    assert models.count_params(params) == 1_965_155
    assert set(params) == {"encoder", "classifier", "decoder"}


def test_no_bridge_removes_exactly_the_two_bridge_channels():
    with_bridge = models.init_params(models.MultiMix(), jax.random.PRNGKey(0), 32)
    without = models.init_params(models.MultiMix(use_bridge=False), jax.random.PRNGKey(0), 32)
    # first decoder conv: 3x3 kernels x 2 input channels x 128 outputs
    assert models.count_params(with_bridge) - models.count_params(without) == 9 * 2 * 128


def test_output_shapes():
    config = tiny_config(image_size=64)
    model = models.build_model(config.model)
    params = models.init_params(model, jax.random.PRNGKey(0), 64)
    x = jnp.zeros((3, 64, 64, 1))
    skips, logits = model.apply({"params": params}, x, train=False, method=models.MultiMix.encode)
    assert logits.shape == (3, 2)
    assert [s.shape for s in skips] == [(3, 64 >> i, 64 >> i, w) for i, w in
                                        enumerate(config.model.widths)]
    seg, logits2 = model.apply({"params": params}, x, jnp.zeros_like(x), train=False)
    assert seg.shape == (3, 64, 64, 1)
    np.testing.assert_allclose(logits, logits2)


def test_dropout_only_in_training_mode():
    config = tiny_config()
    model = models.build_model(config.model)
    params = models.init_params(model, jax.random.PRNGKey(0), 32)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 1))
    classify = lambda train, key: model.apply({"params": params}, x, train=train,
                                              rngs={"dropout": key}, method=models.MultiMix.classify)
    np.testing.assert_array_equal(classify(False, jax.random.PRNGKey(2)),
                                  classify(False, jax.random.PRNGKey(3)))
    assert not np.allclose(classify(True, jax.random.PRNGKey(2)), classify(True, jax.random.PRNGKey(3)))


def _align_corners_reference(in_size: int, out_size: int) -> np.ndarray:
    """torch's align_corners=True weights in float64: src = i * (in - 1) / (out - 1)."""
    weights = np.zeros((out_size, in_size))
    src = np.arange(out_size) * (in_size - 1) / (out_size - 1)
    lo = np.minimum(np.floor(src).astype(int), in_size - 2)
    weights[np.arange(out_size), lo] = 1 - (src - lo)
    weights[np.arange(out_size), lo + 1] += src - lo
    return weights


@pytest.mark.parametrize("rate", [0.25, 0.1])
def test_dropout_keeps_one_minus_rate_and_rescales(rate):
    """The 8-bit draw (rate 0.25) and nn.Dropout's draw (0.1) alike: a fraction 1 - rate of
    the entries kept, each scaled by 1 / (1 - rate), the rest zero; a new key, a new mask."""
    x = jnp.ones((4, 64, 64, 8), jnp.float32)
    drop = lambda seed: models.Dropout(rate).apply(
        {}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(seed)})
    y = np.asarray(drop(0))
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / (1 - rate)], rtol=1e-6)
    assert abs((y > 0).mean() - (1 - rate)) < 0.01
    assert not np.array_equal(y, np.asarray(drop(1)))
    same = models.Dropout(rate).apply({}, x, deterministic=True)
    assert np.array_equal(np.asarray(same), np.asarray(x))


def test_align_corners_resize_matches_the_definition():
    # upsampling 4 -> 7: src = i * 3 / 6, so values are 0, .5, 1, ..., 3
    x = jnp.arange(4.0).reshape(1, 4, 1, 1) * jnp.ones((1, 1, 4, 1))
    up = resize.resize_bilinear_align_corners(x, 7, 4)
    np.testing.assert_allclose(up[0, :, 0, 0], np.arange(7) * 0.5, atol=1e-6)
    # downsampling 9 -> 3 picks rows 0, 4, 8 exactly (no antialiasing, unlike jax.image.resize)
    y = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    down = resize.resize_bilinear_align_corners(y, 3, 3)
    np.testing.assert_allclose(down, y[:, ::4, ::4], atol=1e-6)
    # the decoder's x2 upsampling equals the float64 reference weights (up to jax.image's
    # float32 sample coordinates: ~1e-7 px per pixel of position)
    for side in (2, 4, 16, 32):
        v = np.asarray(jax.random.normal(jax.random.PRNGKey(side), (2, side, side, 3)))
        ref = _align_corners_reference(side, 2 * side)
        np.testing.assert_allclose(resize.upsample2x(jnp.asarray(v)),
                                   np.einsum("oh,bhwc,pw->bopc", ref, v, ref), atol=2e-5)
    # the bridge's 1/8 scale: 256 -> 32 keeps the corner pixels. jax.image computes the sample
    # coordinates (up to 255) in float32, ~1.5e-5 px off, hence 1e-4 on unit-variance values.
    z = jax.random.normal(jax.random.PRNGKey(1), (1, 256, 256, 2))
    small = resize.scale_by(z, 1 / 8)
    assert small.shape == (1, 32, 32, 2)
    np.testing.assert_allclose(small[0, [0, 0, -1, -1], [0, -1, 0, -1]],
                               z[0, [0, 0, -1, -1], [0, -1, 0, -1]], atol=1e-4)
    # an interior value: output row 1 samples input row 255/31 ~ 8.226
    src = 255 / 31
    lo = int(src)
    expected = (1 - (src - lo)) * z[0, lo, 0] + (src - lo) * z[0, lo + 1, 0]
    np.testing.assert_allclose(small[0, 1, 0], expected, rtol=1e-5, atol=1e-4)
    # 1-pixel axes: torch samples index 0 only
    np.testing.assert_allclose(resize.resize_bilinear_align_corners(y, 1, 3)[:, 0],
                               jnp.broadcast_to(y[:, :1, ::4], (2, 1, 3, 3))[:, 0], atol=1e-6)


def test_saliency_equals_finite_differences():
    config = tiny_config()
    model = models.build_model(config.model)
    params = models.init_params(model, jax.random.PRNGKey(0), 32)
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 32, 32, 1))
    sal = np.asarray(saliency_map(model, params, x))
    assert sal.shape == x.shape and (sal >= 0).all()
    logits = model.apply({"params": params}, x, train=False, method=models.MultiMix.classify)
    k = np.asarray(jnp.argmax(logits, -1))

    def selected(xx, image):
        out = model.apply({"params": params}, xx, train=False, method=models.MultiMix.classify)
        return float(out[image, k[image]])

    eps = 1e-3
    for image in range(2):
        for flat in np.argsort(sal[image].ravel())[-6:]:  # the most salient pixels
            i, j = np.unravel_index(flat, (32, 32))
            delta = jnp.zeros_like(x).at[image, i, j, 0].set(eps)
            fd = (selected(x + delta, image) - selected(x - delta, image)) / (2 * eps)
            np.testing.assert_allclose(sal[image, i, j, 0], abs(fd), rtol=0.05)


@pytest.mark.slow  # the paper's widths in bfloat16: half a minute on 2 cores (GPU/TPU dtype)
def test_bfloat16_computes_in_bfloat16_with_float32_params_and_outputs():
    config = tiny_config()
    config.model.dtype = "bfloat16"
    model16 = models.build_model(config.model)
    model32 = models.build_model(tiny_config().model)
    params = models.init_params(model16, jax.random.PRNGKey(0), 32)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 32, 32, 1), minval=-1, maxval=1)
    skips, _ = model16.apply({"params": params}, x, train=False, method=models.MultiMix.encode)
    assert all(s.dtype == jnp.bfloat16 for s in skips)
    sal16, sal32 = saliency_map(model16, params, x), saliency_map(model32, params, x)
    assert sal16.dtype == jnp.float32
    np.testing.assert_allclose(sal16, sal32, rtol=1e-5, atol=1e-7)  # its pass stays float32
    out16 = model16.apply({"params": params}, x, sal16, train=False)
    out32 = model32.apply({"params": params}, x, sal32, train=False)
    for a16, a32 in zip(out16, out32):  # (seg logits, class logits)
        assert a16.dtype == jnp.float32
        assert np.abs(np.asarray(a16) - np.asarray(a32)).max() <= 0.1 * np.abs(a32).max()
        assert np.corrcoef(np.ravel(a16), np.ravel(a32))[0, 1] > 0.99
    # without saliency_float32 the saliency pass itself runs in bfloat16 (still float32 out)
    fast = model16.clone(saliency_float32=False)
    sal_fast = saliency_map(fast, params, x)
    assert sal_fast.dtype == jnp.float32 and not np.allclose(sal_fast, sal32, rtol=1e-3)


def test_bfloat16_segmentation_logits_come_from_a_float32_final_conv():
    config = tiny_config()
    config.model.dtype = "bfloat16"
    model = models.build_model(config.model)
    params = models.init_params(model, jax.random.PRNGKey(0), 32)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 1), minval=-1, maxval=1)
    _, state = model.apply({"params": params}, x, train=False, capture_intermediates=True)
    decoder = state["intermediates"]["decoder"]
    stages = sorted(k for k in decoder if k.startswith("ConvBlock"))
    assert decoder[stages[-1]]["__call__"][0].dtype == jnp.bfloat16  # the body: bfloat16
    head = [k for k in decoder if k.startswith("Conv_")]
    assert len(head) == 1 and decoder[head[0]]["__call__"][0].dtype == jnp.float32


def test_unknown_compute_dtype_is_one_clear_error():
    config = tiny_config()
    config.model.dtype = "float16"
    with pytest.raises(ValueError, match=r"config.model.dtype='float16' is not supported"):
        models.build_model(config.model)
