import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimix_jax import losses


def test_classification_loss_by_hand():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([0, 0])
    expected = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(1.0))) / 2
    np.testing.assert_allclose(losses.classification_loss(logits, labels), expected, rtol=1e-6)


def test_fixmatch_by_hand_and_mean_over_all_samples():
    weak = jnp.array([[3.0, 0.0], [0.0, 0.1], [0.0, 4.0]])  # confident, unsure, confident
    strong = jnp.array([[1.0, 0.0], [5.0, 0.0], [1.0, 1.0]])
    loss, mask = losses.fixmatch_loss(weak, strong, threshold=0.7)
    np.testing.assert_array_equal(mask, [1.0, 0.0, 1.0])
    expected = (np.log(1 + np.exp(-1.0)) + 0.0 + np.log(2.0)) / 3  # divided by ALL 3
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_fixmatch_threshold_boundary_is_inclusive():
    weak = jnp.array([[np.log(0.7), np.log(0.3)]])
    confidence = float(jax.nn.softmax(weak).max())
    strong = jnp.zeros((1, 2))
    _, at = losses.fixmatch_loss(weak, strong, threshold=confidence)
    _, above = losses.fixmatch_loss(weak, strong, threshold=float(np.nextafter(np.float32(confidence), np.float32(1))))
    assert float(at[0]) == 1.0 and float(above[0]) == 0.0


def test_fixmatch_weak_branch_gets_no_gradient():
    weak, strong = jnp.array([[3.0, 0.0]]), jnp.array([[0.0, 1.0]])
    g_weak = jax.grad(lambda w: losses.fixmatch_loss(w, strong)[0])(weak)
    g_strong = jax.grad(lambda s: losses.fixmatch_loss(weak, s)[0])(strong)
    np.testing.assert_array_equal(g_weak, 0.0)
    assert np.abs(g_strong).sum() > 0


def test_dice_loss_by_hand():
    logits = jnp.zeros((1, 2, 2, 1))  # p = 0.5 everywhere
    mask = jnp.array([1.0, 0, 0, 0]).reshape(1, 2, 2, 1)
    # 1 - (2*0.5 + 1) / (2 + 1 + 1) = 0.5
    np.testing.assert_allclose(losses.dice_loss(logits, mask), 0.5, rtol=1e-6)
    perfect = jnp.where(mask > 0, 30.0, -30.0)
    np.testing.assert_allclose(losses.dice_loss(perfect, mask), 0.0, atol=1e-6)
    two = jnp.concatenate([logits, perfect])
    np.testing.assert_allclose(losses.dice_loss(two, jnp.concatenate([mask, mask])), 0.25, rtol=1e-6)


def test_bernoulli_kl_by_hand_zero_for_identical_positive_otherwise():
    a, b = 0.3, -1.2
    p, q = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    expected = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    la, lb = jnp.full((1, 2, 2, 1), a), jnp.full((1, 2, 2, 1), b)
    np.testing.assert_allclose(losses.segmentation_kl(la, lb, "bernoulli"), expected, rtol=1e-5)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1)) * 5
    assert float(losses.segmentation_kl(x, x, "bernoulli")) == pytest.approx(0.0, abs=1e-7)
    y = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1)) * 5
    assert float(losses.segmentation_kl(x, y, "bernoulli")) > 0.1
    assert np.isfinite(float(losses.segmentation_kl(x * 100, -y * 100, "bernoulli")))


def test_original_kl_is_exactly_zero_with_zero_gradient():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
    y = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    assert float(losses.segmentation_kl(x, y, "original")) == 0.0
    grad = jax.grad(lambda a: losses.segmentation_kl(a, y, "original"))(x)
    assert float(jnp.abs(grad).max()) == 0.0
    with pytest.raises(ValueError, match="loss.kl"):
        losses.segmentation_kl(x, y, "softmax")


def test_total_is_the_weighted_sum():
    terms = {"cls": 1.0, "fixmatch": 2.0, "dice": 3.0, "kl": 4.0}
    weights = {"cls": 1.0, "fixmatch": 0.25, "dice": 5.0, "kl": 0.01}
    assert losses.total_loss(terms, weights) == pytest.approx(1 + 0.5 + 15 + 0.04)
    assert losses.total_loss({"dice": 3.0}, weights) == pytest.approx(15)


def test_occlusion_consistency_is_dice_against_the_hardened_clean_mask_without_its_gradient():
    clean = jnp.array([4.0, -3.0, 0.2, -0.1]).reshape(1, 2, 2, 1)  # mask [1, 0, 1, 0]
    occluded = jnp.array([1.0, 1.0, -2.0, -1.0]).reshape(1, 2, 2, 1)
    expected = losses.dice_loss(occluded, jnp.array([1.0, 0, 1, 0]).reshape(1, 2, 2, 1))
    np.testing.assert_allclose(losses.occlusion_consistency_loss(occluded, clean), expected,
                               rtol=1e-6)
    agree = jnp.where(clean > 0, 30.0, -30.0)
    assert float(losses.occlusion_consistency_loss(agree, clean)) == pytest.approx(0.0, abs=1e-6)
    g_clean = jax.grad(lambda c: losses.occlusion_consistency_loss(occluded, c))(clean)
    g_occluded = jax.grad(lambda o: losses.occlusion_consistency_loss(o, clean))(occluded)
    np.testing.assert_array_equal(g_clean, 0.0)
    assert np.abs(g_occluded).sum() > 0
