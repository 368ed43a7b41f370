"""The paper's protocol at 256x256 (docs/multimix.md, Data): train on Kermany (CheX) + JSRT, report
in-domain on their test splits and cross-domain on Montgomery (MCU) and NIH pneumonia (NIHX).
For a GPU/TPU (at 256 px a CPU step takes many seconds).

Build the datasets once from your manual downloads (no TensorFlow needed; the builders fix
the splits: Kermany's folders, JSRT 111/13/123 and Montgomery 93/10/35 seeded by 0, NIH test
only with NORMAL subsampled to 2,754):
  python scripts/build_dataset.py kermany     --manual_dir ~/data/chest_xray  --data_dir ~/tfds --size 256
  python scripts/build_dataset.py jsrt        --manual_dir ~/data/jsrt        --data_dir ~/tfds --size 256
  python scripts/build_dataset.py montgomery  --manual_dir ~/data/montgomery  --data_dir ~/tfds --size 256
  python scripts/build_dataset.py nih_pneumonia --manual_dir ~/data/nih       --data_dir ~/tfds --size 256
then
  python -m multimix_jax.main --config configs/paper.py --workdir runs/paper_100_10 \
      --config.data_dir=~/tfds --config.labels.cls=100 --config.labels.seg=10
Budgets: labels.cls in {100, 1000, all}, labels.seg in {10, 50, all}. Validation uses the
datasets' own validation splits (Kermany 16, JSRT 13 images), as the paper; classification is
at P(pneumonia) >= 0.5 in validation and evaluation alike, the paper's argmax
(eval.threshold='fixed', the base default).
Expected figures: the paper's Table 2 (docs/multimix.md); not run with this code yet.
"""

import os

import ml_collections

from multimix_jax.config_base import base_config, data_spec
from multimix_jax.variants import apply_variant


def get_config(variant: str = "multimix") -> ml_collections.ConfigDict:
    """``configs/paper.py:VARIANT`` picks a baseline or ablation (multimix_jax/variants.py)."""
    config = base_config()
    # One reference shared by every dataset spec, so --config.data_dir=DIR moves them all.
    data_dir = ml_collections.FieldReference(
        os.path.expanduser(os.environ.get("MULTIMIX_TFDS_DIR", "~/tensorflow_datasets")))
    config.data_dir = data_dir  # where scripts/build_dataset.py wrote the datasets
    tfds = lambda name, **kw: dict(kind="tfds", name=name, data_dir=data_dir, path="",
                                   num_examples=0, split="train", **kw)
    config.data.image_size = 256
    config.data.cls = data_spec(**tfds("kermany"))
    config.data.seg = data_spec(**tfds("jsrt"))
    config.data.val_cls = "split:validation"
    config.data.val_seg = "split:validation"
    config.data.eval_sets = ml_collections.ConfigDict({
        "chex_test": dict(task="classification", **tfds("kermany")),
        "jsrt_test": dict(task="segmentation", **tfds("jsrt")),
        "nihx": dict(task="classification", **tfds("nih_pneumonia")),
        "mcu_test": dict(task="segmentation", **tfds("montgomery")),
    })
    for spec in config.data.eval_sets.values():
        spec.split = "test"
    config.eval.table = ml_collections.ConfigDict(dict(
        in_cls="chex_test", in_seg="jsrt_test", cross_cls="nihx", cross_seg="mcu_test"))
    config.optim.learning_rate = 1e-4
    config.optim.lr_decay_epochs = 8
    config.train.num_epochs = 100
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
    return apply_variant(config, variant)
