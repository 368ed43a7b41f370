"""Command line: train (then evaluate), evaluate, or predict.

  python -m multimix_jax.main --config configs/default.py --workdir runs/default
  python -m multimix_jax.main --config configs/default.py --workdir runs/default --mode evaluate \
      --eval_cls_folder mine=/data/xrays --eval_seg_folder lungs=/data/seg
  python -m multimix_jax.main --config configs/default.py --workdir runs/default --mode predict \
      --inputs img1.png some_folder/ --output predictions/
Any config field can be overridden: --config.train.num_steps=100 --config.labels.cls=all
"""

from __future__ import annotations

import logging

from absl import app, flags
from ml_collections import config_flags

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
flags.DEFINE_string("output", None, "Output folder for evaluate/predict (default: workdir or "
                    "workdir/predictions).")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _extra_sets() -> dict:
    extra = {}
    for task, items in (("classification", FLAGS.eval_cls_folder),
                        ("segmentation", FLAGS.eval_seg_folder)):
        for item in items:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise app.UsageError(f"expected NAME=DIR, got {item!r}")
            extra[name] = (task, path)
    return extra


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("multimix_jax").setLevel(logging.INFO)
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from multimix_jax import evaluate, predict, train  # after flags: keeps --help fast

    config = FLAGS.config
    if FLAGS.mode == "train":
        train.train_and_evaluate(config, FLAGS.workdir)
        evaluate.evaluate(config, FLAGS.workdir, which="best", extra_sets=_extra_sets())
    elif FLAGS.mode == "evaluate":
        evaluate.evaluate(config, FLAGS.workdir, which=FLAGS.checkpoint,
                           extra_sets=_extra_sets(), output_dir=FLAGS.output)
    else:
        if not FLAGS.inputs:
            raise app.UsageError("--mode predict needs --inputs FILE_OR_DIR ...")
        predict.predict_files(config, FLAGS.workdir, FLAGS.inputs,
                                FLAGS.output or f"{FLAGS.workdir}/predictions", FLAGS.checkpoint)


def run() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname).1s %(message)s")
    app.run(main)


if __name__ == "__main__":
    run()
