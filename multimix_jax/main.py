"""Command line: train (then evaluate), evaluate, or predict.

  python -m multimix_jax.main --config configs/default.py --workdir runs/default
  python -m multimix_jax.main --config configs/default.py --workdir runs/default --mode evaluate \
      --eval_cls_folder mine=/data/xrays --eval_seg_folder lungs=/data/seg
  python -m multimix_jax.main --config configs/default.py --workdir runs/default --mode predict \
      --inputs img1.png some_folder/ --output predictions/
  ... --mode evaluate --adapt_prior   # each set's class prior estimated without its labels
Any config field can be overridden: --config.train.num_steps=100 --config.labels.cls=all

The workdir records the config that made it (config.json). Resuming, evaluating or predicting
with a config that differs in a field that changes what the checkpoints are (model, data,
budgets, losses, seeds...; not run length, logging or eval settings) stops with the list of
differing fields, unless --allow_config_change names them. A workdir is trained by one run at
a time (train.lock); evaluate and predict only read finished checkpoints, so they may run
beside training. Bad input stops before the first step with one line saying what would work.
"""

from __future__ import annotations

import logging
import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from multimix_jax import workdir as workdir_lib
from multimix_jax.errors import DivergenceError, NonFiniteLossError, UserError

config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard logs and results go here.")
flags.DEFINE_enum("mode", "train", ["train", "evaluate", "predict"],
                  "train: train (resuming from workdir) and then evaluate the best checkpoint.")
flags.DEFINE_string("checkpoint", "best", "best | latest | a step number, for evaluate/predict.")
flags.DEFINE_multi_string("eval_cls_folder", [], "NAME=DIR with DIR/{NORMAL,PNEUMONIA}/*: an extra "
                          "classification evaluation set (any image size).")
flags.DEFINE_multi_string("eval_seg_folder", [], "NAME=DIR with DIR/images and DIR/masks: an extra "
                          "segmentation evaluation set.")
flags.DEFINE_multi_string("inputs", [], "Image files or folders for --mode predict.")
flags.DEFINE_bool("adapt_prior", False, "evaluate/predict: adjust P(pneumonia) to each set's own "
                  "class prior, estimated from its predictions without labels (EM, Saerens et "
                  "al. 2002); the metrics and the threshold then apply to the adjusted "
                  "probabilities, and the estimated prior is reported.")
flags.DEFINE_string("output", None, "Output folder for evaluate/predict (default: workdir or "
                    "workdir/predictions).")
flags.DEFINE_list("allow_config_change", [], "Config fields (or groups, e.g. optim) that may "
                  "differ from the config recorded in the workdir, comma-separated, or 'all'; "
                  "without it a resume/evaluate/predict with a changed field such as "
                  "model.widths or data.image_size stops and lists the differences.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _override_named(key: str) -> str:
    """The command-line override that mentions config key ``key``."""
    for arg in sys.argv[1:]:
        name = arg.split("=", 1)[0]
        if name.startswith("--config.") and key in name[len("--config."):].split("."):
            return arg
    return f"--config.{key}"


def _unknown_field(error: Exception) -> str:
    key = str(error).strip("\"'")
    return (f"{_override_named(key)}: the config has no field {key!r}; check the spelling "
            "against the config file")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with an override of a field the config lacks as one line."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        sys.exit(f"error: {_unknown_field(error)}")


def load_config():
    """FLAGS.config (loaded lazily by ml_collections), with one-sentence errors."""
    try:
        config = FLAGS.config
        config.keys()  # a config file that failed to load raises on first use
        return config
    except OSError:
        raise UserError(f"--config {FLAGS['config'].config_filename}: no such config file; "
                        "give a configs/*.py file such as configs/default.py") from None
    except (AttributeError, KeyError) as error:
        raise UserError(_unknown_field(error)) from None
    except (TypeError, ValueError) as error:
        raise UserError(f"--config override: {error}") from None


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_config_values(config) -> None:
    """Budgets and hold-outs: a positive count or the words the data layer knows."""
    for name in ("labels.cls", "labels.seg", "data.val_cls", "data.val_seg"):
        group, field = name.split(".")
        value = config[group][field]
        word = value == "all" if group == "labels" else str(value).startswith("split:")
        if not (_is_count(value) or word):
            what = "'all'" if group == "labels" else "'split:NAME'"
            raise UserError(f"--config.{name}={value}: expected a positive number or {what}")


def extra_sets() -> dict:
    """name -> (task, folder) of --eval_cls_folder/--eval_seg_folder, checked up front."""
    extra = {}
    for flag, task, inner in (("eval_cls_folder", "classification", ()),
                              ("eval_seg_folder", "segmentation", ("images", "masks"))):
        for item in FLAGS[flag].value:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise UserError(f"--{flag} {item}: expected NAME=DIR, e.g. mine=/data/xrays")
            missing = [p for p in (pathlib.Path(path), *(pathlib.Path(path) / i for i in inner))
                       if not p.is_dir()]
            if missing:
                layout = f"; DIR must hold {' and '.join(i + '/' for i in inner)}" if inner else ""
                raise UserError(f"--{flag} {item}: no folder {missing[0]}{layout}")
            extra[name] = (task, path)
    return extra


def _check_inputs(mode: str, which: str) -> None:
    from multimix_jax.checkpointing import parse_which
    parse_which(which)
    if mode == "predict" and not FLAGS.inputs:
        raise UserError("--mode predict needs --inputs FILE_OR_DIR ...")
    if mode == "train" and FLAGS.adapt_prior:
        raise UserError("--adapt_prior is for --mode evaluate or --mode predict; train first, "
                        "then evaluate with it")
    if mode != "train" and not (pathlib.Path(FLAGS.workdir) / "checkpoints").is_dir():
        raise UserError(f"--workdir {FLAGS.workdir}: no checkpoints there; train first "
                        "(--mode train) or check the path")


def run_mode(config) -> None:
    from multimix_jax import evaluate, predict, train  # after flags: keeps --help fast
    extra = extra_sets()
    _check_inputs(FLAGS.mode, FLAGS.checkpoint)
    check_config_values(config)
    workdir_lib.adopt_recorded_data_root(config, FLAGS.workdir)
    if "data_root" in config and not config.data_root:
        raise UserError("--config.data_root is not set: pass --config.data_root=DIR or set "
                        "MULTIMIX_DATA_ROOT to the folder this config's data paths start from")
    if FLAGS.mode == "train":
        train.train_and_evaluate(config, FLAGS.workdir,
                                 allow_config_change=FLAGS.allow_config_change)
        evaluate.evaluate(config, FLAGS.workdir, which="best", extra_sets=extra)
        return
    if FLAGS.mode == "evaluate":  # both check the config against the workdir's record first
        evaluate.evaluate(config, FLAGS.workdir, which=FLAGS.checkpoint, extra_sets=extra,
                          output_dir=FLAGS.output, adapt_prior=FLAGS.adapt_prior,
                          allow_config_change=FLAGS.allow_config_change)
    else:
        predict.predict_files(config, FLAGS.workdir, FLAGS.inputs,
                              FLAGS.output or f"{FLAGS.workdir}/predictions", FLAGS.checkpoint,
                              adapt_prior=FLAGS.adapt_prior,
                              allow_config_change=FLAGS.allow_config_change)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("multimix_jax").setLevel(logging.INFO)
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run_mode(load_config())
    except (UserError, NonFiniteLossError, DivergenceError) as error:
        sys.exit(f"error: {error}")


def run() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname).1s %(message)s")
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
