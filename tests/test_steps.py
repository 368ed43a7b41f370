import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimix_jax import sharding, steps
from multimix_jax import state as train_state
from multimix_jax.plan import Plan
from tests.conftest import REPO, random_batch, tiny_config


def _setup(config, steps_per_epoch=100):
    mesh = sharding.make_mesh(jax.devices()[:1])
    model, tx, state = train_state.setup(config, mesh, steps_per_epoch)
    return mesh, model, tx, state


def test_step_decay_schedule_in_steps():
    config = tiny_config()
    schedule = train_state.learning_rate_schedule(config.optim, steps_per_epoch=10)
    assert schedule(0) == pytest.approx(1e-4)
    assert schedule(79) == pytest.approx(1e-4)
    assert schedule(80) == pytest.approx(1e-5)
    assert schedule(160) == pytest.approx(1e-6)
    config.optim.lr_decay_steps = 30  # in steps: whatever an epoch is
    for steps_per_epoch in (1, 10, 458):
        schedule = train_state.learning_rate_schedule(config.optim, steps_per_epoch)
        assert schedule(29) == pytest.approx(1e-4) and schedule(30) == pytest.approx(1e-5)


def test_the_recipe_decays_at_the_same_step_in_every_variant():
    from configs import shared_real
    for variant, steps_per_epoch in (("multimix", 458), ("enc", 458), ("unet", 14)):
        config = shared_real.get_config(variant)
        schedule = train_state.learning_rate_schedule(config.optim, steps_per_epoch)
        assert schedule(1121) == pytest.approx(1e-3) and schedule(1122) == pytest.approx(1e-4)


def test_segmentation_only_decoder_equals_the_naive_all_images_step():
    """Decoding only the 2 seg streams == the original's decoding of all 5 (loss, grads)."""
    config = tiny_config()
    _, model, _, state = _setup(config)
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(config))
    rng = jax.random.PRNGKey(7)  # dropout ON: per-element bits do not depend on batch size

    def loss_and_grads(segment_all_images):
        fn = jax.value_and_grad(steps.compute_losses, has_aux=True)
        return jax.jit(lambda p: fn(p, batch, rng, model=model, config=config,
                                    segment_all_images=segment_all_images))(state.params)

    # Dropout bits for the first 20 rows equal those of a 50-row draw only with the
    # partitionable threefry (each element's bits from its own index): pin it.
    with jax.threefry_partitionable(True):
        (loss_fast, aux_fast), grads_fast = loss_and_grads(False)
        (loss_naive, aux_naive), grads_naive = loss_and_grads(True)
    np.testing.assert_allclose(loss_fast, loss_naive, rtol=1e-5)
    for name in aux_fast:
        np.testing.assert_allclose(aux_fast[name], aux_naive[name], rtol=1e-5, atol=1e-7)
    flat_fast = jax.tree_util.tree_leaves_with_path(grads_fast)
    flat_naive = jax.tree_util.tree_leaves(grads_naive)
    for (path, g_fast), g_naive in zip(flat_fast, flat_naive):
        np.testing.assert_allclose(g_fast, g_naive, rtol=1e-4, atol=1e-6, err_msg=str(path))
    assert all(name in aux_fast for name in ("kl_loss", "fixmatch_loss", "dice_loss", "cls_loss"))


def test_the_occlusion_term_adds_gamma_times_its_loss_on_half_the_unlabelled_films():
    """Without dropout (no draw depends on the rows), the loss with gamma is the loss without
    it plus gamma * L_dice(occluded view, hardened clean mask) on the first half."""
    from multimix_jax import losses
    from multimix_jax.models import MultiMix
    config = tiny_config()
    config.model.dropout_rate = 0.0
    _, model, _, state = _setup(config)
    batch = random_batch(config)
    n = config.data.per_stream_batch
    batch["seg_unlabeled"]["occluded"] = np.clip(
        batch["seg_unlabeled"]["image"] + 0.5 * (np.arange(config.data.image_size) % 3 == 0)[None, :, None, None],
        -1, 1).astype(np.float32)
    rng = jax.random.PRNGKey(3)
    plain_loss, _ = steps.compute_losses(state.params, batch, rng, model=model, config=config)
    config.loss.seg_consistency_weight = 2.0
    loss, scalars = steps.compute_losses(state.params, batch, rng, model=model, config=config)

    def seg_logits(images):
        images = jnp.asarray(images)
        saliency = steps.saliency_map(model, state.params, images)
        skips, _ = model.apply({"params": state.params}, images, train=False,
                               method=MultiMix.encode)
        return model.apply({"params": state.params}, images, saliency, skips, train=False,
                           method=MultiMix.decode)

    half = n // 2
    expected = losses.occlusion_consistency_loss(
        seg_logits(batch["seg_unlabeled"]["occluded"][:half]),
        seg_logits(batch["seg_unlabeled"]["image"][:half]))
    np.testing.assert_allclose(scalars["occlusion_loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(loss, plain_loss + 2.0 * expected, rtol=1e-5)


def test_thirty_steps_on_a_fixed_batch_drive_the_loss_down():
    config = tiny_config()
    config.optim.learning_rate = 1e-2
    config.model.dropout_rate = 0.0
    mesh, model, tx, state = _setup(config)
    step = steps.jit_train_step(model, tx, config, mesh)
    batch = sharding.shard_batch(random_batch(config), mesh)
    history = []
    for _ in range(30):
        state, collection = step(state, batch)
        values = collection.compute()
        history.append(float(values["loss"]))
        assert set(values) == set(Plan.from_config(config).metric_names)
    assert int(state.step) == 30
    assert np.isfinite(history).all()
    assert history[-1] < 0.6 * history[0], history
    assert values["cls_loss"] < 0.1 and values["train_dice"] > 0.85, values


def test_ema_params_track_params():
    config = tiny_config()
    config.optim.ema_decay = 0.5
    mesh, model, tx, state = _setup(config)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    state, _ = steps.jit_train_step(model, tx, config, mesh)(state, sharding.shard_batch(random_batch(config), mesh))
    leaf = lambda tree: np.asarray(tree["classifier"]["Dense_0"]["kernel"])
    np.testing.assert_allclose(leaf(state.ema_params), 0.5 * leaf(state.params) + 0.5 * leaf(before),
                               rtol=1e-5, atol=1e-7)


def test_original_kl_gives_zero_kl_metric_and_baseline_configs_run():
    config = tiny_config()
    config.loss.kl = "original"
    mesh, model, tx, state = _setup(config)
    _, collection = steps.jit_train_step(model, tx, config, mesh)(
        state, sharding.shard_batch(random_batch(config), mesh))
    assert float(collection.compute()["kl_loss"]) == 0.0
    # classification only (Enc): no decoder, no seg streams in the batch
    enc = tiny_config()
    enc.tasks.segmentation, enc.loss.fixmatch = False, False
    mesh, model, tx, state = _setup(enc)
    batch = {k: v for k, v in random_batch(enc).items() if k in Plan.from_config(enc).streams}
    _, collection = steps.jit_train_step(model, tx, enc, mesh)(state, sharding.shard_batch(batch, mesh))
    assert set(collection.compute()) == {"loss", "cls_loss", "accuracy"}


def test_bfloat16_step_keeps_float32_state_and_a_finite_loss_close_to_float32():
    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config()
        config.model.dtype = dtype
        mesh, model, tx, state = _setup(config)
        step = steps.jit_train_step(model, tx, config, mesh)
        batch = sharding.shard_batch(random_batch(config), mesh)
        for _ in range(2):
            state, collection = step(state, batch)
        losses[dtype] = float(collection.compute()["loss"])
        floats = jax.tree_util.tree_leaves((state.params, state.opt_state, state.ema_params))
        assert all(x.dtype == jnp.float32 for x in floats if jnp.issubdtype(x.dtype, jnp.floating))
    assert np.isfinite(losses["bfloat16"])
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)
    assert losses["bfloat16"] != losses["float32"]  # it did compute in bfloat16


def test_predict_outputs():
    config = tiny_config()
    mesh, model, _, state = _setup(config)
    images = sharding.shard_batch(random_batch(config)["cls_labeled"]["image"], mesh)
    out = steps.jit_predict(model, mesh)(state.params, images)
    assert out["class_probs"].shape == (2, 2)
    np.testing.assert_allclose(out["class_probs"].sum(-1), 1.0, rtol=1e-6)
    assert out["mask_probs"].shape == (2, 32, 32) and out["saliency"].shape == (2, 32, 32)


EIGHT_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from multimix_jax import sharding, steps
    from multimix_jax import state as train_state
    from tests.conftest import random_batch, tiny_config
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config(per_stream=8)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = sharding.make_mesh(devices)
        model, tx, state = train_state.setup(config, mesh, 100)
        batch = sharding.shard_batch(random_batch(config), mesh)
        grad_fn = jax.jit(jax.grad(lambda p, b: steps.compute_losses(
            p, b, jax.random.PRNGKey(3), model=model, config=config)[0]))
        grads = grad_fn(state.params, batch)
        step = steps.jit_train_step(model, tx, config, mesh)
        for _ in range(2):
            state, collection = step(state, batch)
        assert len(state.params["classifier"]["Dense_0"]["kernel"].sharding.device_set) == len(devices)
        results.append((grads, state.params, collection.compute()))
    (g1, p1, m1), (g8, p8, m8) = results
    leaves = lambda tree: jax.tree_util.tree_leaves_with_path(jax.tree_util.tree_map(np.asarray, tree))
    for (path, a), (_, b) in zip(leaves(g1), leaves(g8)):
        # float32 sums in another order: compare against each tensor's own scale
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max() + 1e-6, path
    for (path, a), (_, b) in zip(leaves(p1), leaves(p8)):
        # conv biases followed by InstanceNorm have zero true gradient, so Adam turns
        # float noise into lr-sized steps there: compare the kernels, which carry the model.
        if "kernel" in jax.tree_util.keystr(path):  # Adam steps are ~2e-4 here
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5, err_msg=str(path))
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=1e-4, atol=1e-6, err_msg=k)
    print("OK", sorted(m8))
""")


def test_step_on_eight_simulated_devices_matches_one_device():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip(),
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICE_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout
