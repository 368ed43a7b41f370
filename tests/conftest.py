"""Shared fixtures: tiny configs and batches, and a trained tiny run (tests run on 2 CPU
cores)."""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile

# The tiny runs compile the same programs again and again, in this process and in the CLI
# subprocesses (which inherit the variable): one on-disk compilation cache for the session.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="multimix_jax_tests_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

# Tiny shapes make compilation most of a test's time: XLA:CPU's cheapest code generation
# (the same semantics; slower code) shortens it. A level the user set wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])

from multimix_jax.config_base import base_config  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
TINY_WIDTHS = (4, 8, 8, 16, 16)


def tiny_config(image_size: int = 32, per_stream: int = 2, widths=TINY_WIDTHS):
    config = base_config()
    config.data.image_size = image_size
    config.data.per_stream_batch = per_stream
    config.model.widths = widths
    return config


def random_batch(config, seed: int = 0) -> dict:
    """A host batch of all five streams with random images in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n, s = config.data.per_stream_batch, config.data.image_size
    image = lambda: rng.uniform(-1, 1, (n, s, s, 1)).astype(np.float32)
    weak, seg_image = image(), image()
    return {  # the mask is a pixel-wise function of the image, so it can be learnt
        "seg_labeled": {"image": seg_image, "mask": (seg_image > 0).astype(np.float32)},
        "seg_unlabeled": {"image": image()},
        "cls_labeled": {"image": image(), "label": rng.integers(0, 2, n).astype(np.int32)},
        "cls_unlabeled": {"weak": weak, "strong": weak + 0.1 * image()},
    }


@pytest.fixture
def tiny():
    return tiny_config()


def tiny_train_config(num_steps: int = 4):
    """A complete synthetic config that trains in seconds (32 px, tiny widths)."""
    import ml_collections
    config = tiny_config()
    config.data.cls.num_examples, config.data.seg.num_examples = 40, 24
    config.data.val_cls, config.data.val_seg = 8, 4
    config.data.eval_batch_size = 4
    config.labels.cls, config.labels.seg = 8, 4
    config.data.eval_sets = ml_collections.ConfigDict({
        "test_cls": {"task": "classification", "kind": "synthetic", "num_examples": 6},
        "test_seg": {"task": "segmentation", "kind": "synthetic", "num_examples": 5},
    })
    config.eval.table.in_cls, config.eval.table.in_seg = "test_cls", "test_seg"
    config.eval.num_example_pngs = 2
    config.train.num_steps = num_steps
    config.train.log_every_steps = 1
    config.train.eval_every_steps = 2
    config.train.checkpoint_every_steps = 2
    config.train.num_image_summaries = 2
    return config


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A finished 2-step tiny run (validated and checkpointed at step 2), trained once per
    session: read it, or ``shutil.copytree`` it to change it."""
    from multimix_jax import train
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train.train_and_evaluate(tiny_train_config(num_steps=2), workdir)
    return workdir
