"""Fine-tuning from a trained workdir, ``config.init_from`` (docs/multimix.md, A new site).

A fresh run whose config names ``init_from=WORKDIR`` starts from WORKDIR's best checkpoint's
inference parameters (the EMA average when that run evaluates EMA, as its own recorded config
says) with a new optimizer state, learning-rate schedule and step counter. Everything is
checked before any data is loaded: the workdir, a checkpoint in it, and that its parameters
fit this config's model. A resumed run restores its own checkpoint and never reads
``init_from`` again.
"""

from __future__ import annotations

import logging
import pathlib

import jax
import ml_collections

from multimix_jax import evaluation
from multimix_jax import workdir as workdir_lib
from multimix_jax.errors import CheckpointNotFoundError, UserError

log = logging.getLogger("multimix_jax")


def _flag(config) -> str:
    return f"--config.init_from={config.init_from}"


def _source_config(config, workdir: pathlib.Path):
    """The config WORKDIR was trained with (its config.json), which says whether it evaluates
    EMA parameters; this config when WORKDIR records none."""
    recorded = workdir_lib.read_recorded(workdir)
    return config if recorded is None else ml_collections.ConfigDict(recorded)


def _shapes(params) -> dict:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def _check_fits(config, source_config, params, fresh_params) -> None:
    """The loaded parameters have exactly the shapes of this config's model
    (``fresh_params``), or one sentence naming the first parameter and the model fields that
    differ."""
    wanted = _shapes(fresh_params)
    found = _shapes(params)
    if wanted == found:
        return
    first = next(k for k in sorted(set(wanted) | set(found)) if wanted.get(k) != found.get(k))
    differ = [f"model.{k} {source_config.model.get(k)!r} -> {v!r}"
              for k, v in config.model.items() if source_config.model.get(k) != v
              and not (isinstance(v, tuple) and list(v) == source_config.model.get(k))]
    raise UserError(f"{_flag(config)}: its parameters do not fit this config's model "
                    f"(parameter {first}: {found.get(first)} there, {wanted.get(first)} here"
                    f"{'; ' + ', '.join(differ) if differ else ''}); fine-tune with the "
                    "model fields that run was trained with")


def initial_params(config, fresh_params, fresh: bool):
    """The parameters a run starts from: those of ``config.init_from``'s best checkpoint on a
    fresh run (``fresh``) that names one, else ``fresh_params`` (this config's initial ones);
    a missing workdir or checkpoint, or parameters that do not fit, are one sentence."""
    if not fresh or not config.init_from:
        return fresh_params
    source = pathlib.Path(config.init_from).expanduser()
    if not source.is_dir():
        raise UserError(f"{_flag(config)}: no such folder; give the workdir of a trained run")
    source_config = _source_config(config, source)
    try:
        loaded = evaluation.load_for_inference(source_config, source, "best")
    except CheckpointNotFoundError:
        raise UserError(f"{_flag(config)}: no checkpoint there; train that run first or give "
                        "the workdir of a trained run") from None
    except UserError as error:
        raise UserError(f"{_flag(config)}: {error}") from None
    _check_fits(config, source_config, loaded.params, fresh_params)
    which = "EMA" if source_config.optim.ema_decay > 0 else "raw"
    log.info("fine-tuning from %s: its best checkpoint (step %d), %s parameters; new optimizer, "
             "schedule and step counter", source.resolve(), loaded.step, which)
    return loaded.params
