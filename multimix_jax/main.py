"""Command line: train (then evaluate), evaluate, or predict.

  python -m multimix_jax.main --config configs/default.py --workdir runs/default
  python -m multimix_jax.main --config configs/default.py --workdir runs/default --mode evaluate \
      --eval_cls_folder mine=/data/xrays --eval_seg_folder lungs=/data/seg
  python -m multimix_jax.main --config configs/default.py --workdir runs/default --mode predict \
      --inputs img1.png some_folder/ --output predictions/
  ... --mode evaluate --adapt_prior   # each set's class prior estimated without its labels
  ... --mode evaluate --adapt_threshold   # each set's threshold moved by its score drift
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
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from multimix_jax import config_check
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
flags.DEFINE_multi_string("inputs", [], "Image files or folders for --mode predict: "
                          "--inputs a.png b.jpg folder/ (every value up to the next flag), or "
                          "--inputs repeated; a value starting with '-' needs --inputs=-x.png.")
flags.DEFINE_bool("adapt_prior", False, "evaluate/predict: adjust P(pneumonia) to each set's own "
                  "class prior, estimated from its predictions without labels (EM, Saerens et "
                  "al. 2002); the metrics and the threshold then apply to the adjusted "
                  "probabilities, and the estimated prior is reported.")
flags.DEFINE_bool("adapt_threshold", False, "evaluate/predict: move the decision threshold by "
                  "each set's score drift, measured without labels (where a 2-component "
                  "mixture divides the set's logits, against the validation films'); the drift "
                  "and the moved threshold are reported.")
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
    """ml_collections' KeyError text ("'imagesize'\nDid you mean "image_size" ...") as one
    sentence with the dotted field it suggests."""
    text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    found = re.match(r"""[\\'"\s]*([\w.]+)""", text)
    key = found.group(1) if found else "?"
    override = _override_named(key)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    if hint:
        dotted = override.split("=", 1)[0][len("--config."):].split(".")
        where = ".".join(dotted[:dotted.index(key)] if key in dotted else dotted[:-1])
        suggestion = f"did you mean {where + '.' if where else ''}{hint.group(1)}?"
    else:
        suggestion = "check the spelling against the config file"
    return f"{override}: the config has no field {key!r}; {suggestion}"


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


def _flag_error(error: Exception) -> str:
    """absl's flag error in one line: a config file that failed to load says why (its last
    line, e.g. "ValueError: unknown variant 'x'; choose from [...]")."""
    text = str(error)
    if "Error whilst parsing config file" in text:
        value = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
        if value is None and "--config" in sys.argv[:-1]:
            value = sys.argv[sys.argv.index("--config") + 1]
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return f"--config {value}: {last}"
    return text.splitlines()[0] if text else type(error).__name__


def gather_inputs(argv: list[str]) -> list[str]:
    """``--inputs a.png b/ c.jpg``: every value after ``--inputs`` up to the next flag is an
    input (absl's multi flags take one value each), rewritten as ``--inputs=a.png ...``."""
    out, collecting = [], False
    for arg in argv:
        if arg == "--":
            collecting = False
        elif arg in ("--inputs", "-inputs"):
            collecting = True
            continue
        elif arg.startswith(("--inputs=", "-inputs=")):
            collecting = True
            arg = "--inputs=" + arg.split("=", 1)[1]
        elif collecting and not arg.startswith("-"):
            arg = f"--inputs={arg}"
        else:
            collecting = False
        out.append(arg)
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with several values per --inputs, and any flag or config-file error
    (a syntax error, an unknown variant, a field the config lacks) as one line."""
    argv = gather_inputs(argv)
    try:
        return FLAGS(argv)
    except flags.Error as error:
        sys.exit(f"error: {_flag_error(error)}")
    except SyntaxError as error:
        sys.exit(f"error: --config {error.filename}: syntax error at line {error.lineno}: "
                 f"{error.msg}; fix the config file")
    except (AttributeError, KeyError) as error:
        sys.exit(f"error: {_unknown_field(error)}")


def extra_sets(config) -> dict:
    """name -> (task, folder) of --eval_cls_folder/--eval_seg_folder, checked up front: the
    layout, and a NAME that is neither a set of the config nor given twice."""
    from multimix_jax.config_check import validated_sets
    builtin = set(config.data.eval_sets) | validated_sets(config)
    extra = {}
    for flag, task, inner in (("eval_cls_folder", "classification", ()),
                              ("eval_seg_folder", "segmentation", ("images", "masks"))):
        for item in FLAGS[flag].value:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise UserError(f"--{flag} {item}: expected NAME=DIR, e.g. mine=/data/xrays")
            path = config_check.expand_path(path)
            if name in builtin or name in extra:
                what = "a set of the config" if name in builtin else "given twice"
                raise UserError(f"--{flag} {item}: the name {name!r} is {what} "
                                f"({', '.join(sorted(builtin | set(extra)))} are taken); "
                                "give each extra folder a name of its own")
            missing = [p for p in (pathlib.Path(path), *(pathlib.Path(path) / i for i in inner))
                       if not p.is_dir()]
            if missing:
                layout = f"; DIR must hold {' and '.join(i + '/' for i in inner)}" if inner else ""
                raise UserError(f"--{flag} {item}: no folder {missing[0]}{layout}")
            extra[name] = (task, path)
    return extra


def _check_inputs(mode: str, which: str, workdir: str, allow: list[str]) -> None:
    from multimix_jax.checkpointing import parse_which
    parse_which(which)
    if mode == "predict" and not FLAGS.inputs:
        raise UserError("--mode predict needs --inputs FILE_OR_DIR ...")
    for flag in ("adapt_prior", "adapt_threshold"):
        if mode == "train" and FLAGS[flag].value:
            raise UserError(f"--{flag} is for --mode evaluate or --mode predict; train first, "
                            "then evaluate with it")
    if mode == "train":
        return
    if not (pathlib.Path(workdir) / "checkpoints").is_dir():
        raise UserError(f"--workdir {workdir}: no checkpoints there; train first "
                        "(--mode train) or check the path")
    record = pathlib.Path(workdir) / workdir_lib.CONFIG_FILE
    if not record.exists() and "all" not in allow:
        raise UserError(f"{record} is missing, so nothing says which config made these "
                        "checkpoints; restore it, or pass --allow_config_change=all to use "
                        "this config as it is")


def run_mode(config) -> None:
    from multimix_jax import evaluate, predict, train  # after flags: keeps --help fast
    config_check.expand_user_paths(config)
    workdir, output = config_check.expand_path(FLAGS.workdir), config_check.expand_path(FLAGS.output)
    inputs = [config_check.expand_path(i) for i in FLAGS.inputs]
    allow = FLAGS.allow_config_change
    _check_inputs(FLAGS.mode, FLAGS.checkpoint, workdir, allow)
    config_check.check_config_values(config)
    extra = extra_sets(config)
    workdir_lib.adopt_recorded_data_root(config, workdir)
    if "data_root" in config and not config.data_root:
        raise UserError("--config.data_root is not set: pass --config.data_root=DIR or set "
                        "MULTIMIX_DATA_ROOT to the folder this config's data paths start from")
    if FLAGS.mode == "predict":
        output = output or f"{workdir}/predictions"
        config_check.check_writable(output, "--output")
        predict.predict_files(config, workdir, inputs, output, FLAGS.checkpoint,
                              adapt_prior=FLAGS.adapt_prior,
                              adapt_threshold=FLAGS.adapt_threshold, allow_config_change=allow)
        return
    if FLAGS.mode == "train":
        config_check.check_writable(workdir, "--workdir")
    else:  # a config the workdir refuses stops before any folder is read
        workdir_lib.check_config(config, workdir, inference=True, allow=allow)
        config_check.check_writable(output or workdir, "--output" if output else "--workdir")
    from multimix_jax import sources
    extra = sources.extra_sources(config, extra)  # each read once: a bad image stops here
    if FLAGS.mode == "train":
        train.train_and_evaluate(config, workdir, allow_config_change=allow)
        evaluate.evaluate(config, workdir, which="best", extra_sets=extra)
    else:
        evaluate.evaluate(config, workdir, which=FLAGS.checkpoint, extra_sets=extra,
                          output_dir=output, adapt_prior=FLAGS.adapt_prior,
                          adapt_threshold=FLAGS.adapt_threshold,
                          allow_config_change=allow)


def main(argv) -> None:
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}: give every value after "
                 "its flag (--inputs takes several)")
    logging.getLogger("multimix_jax").setLevel(logging.INFO)
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run_mode(load_config())
    except (UserError, NonFiniteLossError, DivergenceError) as error:
        sys.exit(f"error: {error}")
    except OSError as error:  # a file we could not read or write: name it
        where = error.filename or "a file"
        sys.exit(f"error: {where}: {error.strerror or error}")


def run() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname).1s %(message)s")
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
