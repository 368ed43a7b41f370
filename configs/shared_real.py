"""MultiMix on real chest X-rays: the Kermany TRAIN split (classification) and the OpenIST
lung masks (segmentation) of ../shared/data, with |D_l^c| = 100 and |D_l^s| = 10 labels and
everything else unlabelled. A fixed-seed validation split (500 Kermany images, 40 masks) is
held out of training and never trained on; its figures are VALIDATION figures.

  python -m multimix_jax.main --config configs/shared_real.py --workdir runs/shared_real \
      [--config.data_root=/path/to/data]

The recipe (resolution, steps, schedule, EMA, augmentation) lives here, nothing hard-coded;
scripts/train_real.sh runs it with the single-task baselines and collects the table.
"""

import os

import ml_collections

from multimix_jax.config_base import base_config
from multimix_jax.variants import apply_variant

DEFAULT_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))


def get_config(variant: str = "multimix") -> ml_collections.ConfigDict:
    """``configs/shared_real.py:VARIANT`` picks a baseline or ablation (multimix_jax/variants.py)."""
    config = base_config()
    root = ml_collections.FieldReference(os.environ.get("MULTIMIX_DATA_ROOT", DEFAULT_ROOT))
    config.data_root = root
    join = lambda *parts: root + "/" + "/".join(parts)  # FieldReference arithmetic stays linked
    config.data.cls = ml_collections.ConfigDict(dict(
        kind="folder", path=join("kermany_pneumonia_224", "train"), name="", data_dir="",
        num_examples=0))
    config.data.seg = ml_collections.ConfigDict(dict(
        kind="folder", path=join("lung_masks_openist"), name="", data_dir="", num_examples=0))
    config.data.image_size = 64  # CPU budget: ~0.7 s per 50-image step on 2 cores
    config.data.val_cls = 500
    config.data.val_seg = 40
    config.data.eval_batch_size = 50
    config.labels.cls, config.labels.seg = 100, 10
    config.eval.table = ml_collections.ConfigDict(dict(
        in_cls="val_cls", in_seg="val_seg", cross_cls="", cross_seg=""))
    config.augment.seg_joint = True  # 10 masks: joint flip/crop/rotation of image and mask
    config.optim.learning_rate = 1e-3
    config.optim.lr_decay_epochs = 2.4  # one x0.1 step at ~1100 of 1500 steps (461 steps/epoch)
    config.optim.ema_decay = 0.99
    config.train.num_steps = 1500
    config.train.log_every_steps = 50
    config.train.eval_every_steps = 250
    config.train.checkpoint_every_steps = 250
    return apply_variant(config, variant)
