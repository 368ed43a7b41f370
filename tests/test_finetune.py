"""config.init_from: a fresh run starts from another workdir's best inference parameters with a
new optimizer and step counter; a resume restores its own checkpoint; bad sources stop up
front in one sentence."""

import json

import jax
import numpy as np
import pytest

from multimix_jax import checkpointing, sharding, sources, steps, train
from multimix_jax import state as train_state
from multimix_jax.errors import UserError
from tests.conftest import tiny_train_config


def _numpy(tree):
    return jax.tree_util.tree_map(lambda x: np.array(x, copy=True), tree)


def _record_first_states(monkeypatch) -> list:
    """Every run's state before its first step (copied: the step donates it)."""
    seen, make = [], steps.jit_train_step

    def recording(*args, **kwargs):
        step_fn, calls = make(*args, **kwargs), []

        def wrapped(state, batch):
            if not calls:
                seen.append({"step": int(state.step), "params": _numpy(state.params),
                             "ema_params": _numpy(state.ema_params),
                             "opt_state": _numpy(state.opt_state)})
            calls.append(1)
            return step_fn(state, batch)
        return wrapped

    monkeypatch.setattr(steps, "jit_train_step", recording)
    return seen


def _best_state(config, workdir):
    _, _, state = train_state.setup(config, sharding.make_mesh(), 1)
    restored, step, _ = checkpointing.restore_for_inference(
        workdir, checkpointing.abstract_like(state), "best")
    return restored, step


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished 2-step tiny run that evaluates EMA parameters (validated at step 2)."""
    config = tiny_train_config(num_steps=2)
    config.optim.ema_decay = 0.5
    workdir = tmp_path_factory.mktemp("source") / "run"
    train.train_and_evaluate(config, workdir)
    return config, workdir


def test_fine_tune_starts_from_the_best_ema_params_and_resumes_its_own(source, tmp_path,
                                                                        monkeypatch):
    source_config, source_dir = source
    best, _ = _best_state(source_config, source_dir)
    assert not np.array_equal(*[jax.tree_util.tree_leaves(t)[0]
                                for t in (best.params, best.ema_params)])

    seen = _record_first_states(monkeypatch)
    config = tiny_train_config(num_steps=2)
    config.init_from = str(source_dir)
    config.optim.learning_rate = 1e-4  # a lower learning rate, no EMA of its own
    config.seed = 1
    first = train.train_and_evaluate(config, tmp_path / "tuned", stop_at_step=1)
    assert seen[0]["step"] == 0  # a new step counter
    _assert_trees_equal(seen[0]["params"], _numpy(best.ema_params))
    _assert_trees_equal(seen[0]["ema_params"], _numpy(best.ema_params))
    fresh = train_state.setup(config, sharding.make_mesh(), 1)[2]
    _assert_trees_equal(seen[0]["opt_state"], _numpy(fresh.opt_state))  # a new optimizer
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["init_from"] == str(
        source_dir)

    # the resume restores the fine-tune's own step-1 checkpoint, not init_from's parameters
    train.train_and_evaluate(config, tmp_path / "tuned")
    assert seen[1]["step"] == 1
    _assert_trees_equal(seen[1]["params"], _numpy(first["state"].params))


def test_bad_sources_stop_before_any_data_is_loaded(tmp_path, monkeypatch):
    def no_data(config):
        raise AssertionError("data loaded before init_from was checked")
    monkeypatch.setattr(sources, "make_splits", no_data)
    config = tiny_train_config(num_steps=2)
    config.init_from = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match="init_from=.*nowhere: no such folder"):
        train.train_and_evaluate(config, tmp_path / "a")
    (tmp_path / "empty").mkdir()
    config.init_from = str(tmp_path / "empty")
    with pytest.raises(UserError, match="init_from=.*empty: no checkpoint there"):
        train.train_and_evaluate(config, tmp_path / "b")


def test_a_source_model_that_does_not_fit_is_one_sentence(source, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "make_splits", lambda config: 1 / 0)
    config = tiny_train_config(num_steps=2)
    config.model.widths = (4, 8, 8, 16, 32)
    config.init_from = str(source[1])
    with pytest.raises(UserError, match=r"parameters do not fit this config's model .*"
                                        r"model.widths \[4, 8, 8, 16, 16\] -> \(4, 8, 8, 16, 32\)"):
        train.train_and_evaluate(config, tmp_path / "tuned")


def test_the_site_variant_derives_from_shared_real(monkeypatch):
    import importlib.util
    from tests.conftest import REPO
    monkeypatch.setenv("MULTIMIX_DATA_ROOT", "/site")
    spec = importlib.util.spec_from_file_location("finetune_site",
                                                  REPO / "configs" / "finetune_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert config.data.cls.path == "/site/site_films"
    assert config.data.seg.path == "/site/lung_masks_openist"
    config.data_root = "/elsewhere"  # one root moves every path
    assert config.data.cls.path == "/elsewhere/site_films"
    assert config.labels.cls == 20 and config.init_from == ""
    assert config.optim.learning_rate < 1e-3 and config.train.num_steps <= 100
