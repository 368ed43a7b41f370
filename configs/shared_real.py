"""MultiMix on real chest X-rays: a Kermany-layout pneumonia folder (classification) and an
images/ + masks/ lung-mask folder (segmentation) under one data root, with |D_l^c| = 100 and
|D_l^s| = 10 labels and everything else unlabelled. A fixed-seed validation split (500 films,
40 masks) is held out of training and never trained on; its figures are VALIDATION figures.

  python -m multimix_jax.main --config configs/shared_real.py --workdir runs/real \
      --config.data_root=DIR        # or: export MULTIMIX_DATA_ROOT=DIR

DIR holds ``kermany_pneumonia_224/train/{NORMAL,PNEUMONIA}/*`` and
``lung_masks_openist/{images,masks}/*``. The recipe for films from other hospitals
(docs/multimix.md, Recipe for unseen films) lives here: 128 px, acquisition jitter on every
view but the pseudo-labelling one, random opacities painted inside the labelled lungs and
dense ones hiding their border, the Dice term weighted 10 (alpha; 5 in the paper), a
class-balanced labelled stream, and model selection plus
the decision on the shifted validation: a temperature and a balanced-accuracy threshold
fitted on val_cls and val_cls_shifted pooled, the loop's figures cross-fitted
(docs/multimix.md, Decision threshold and calibration). docs/results/real_data.md has the
64 px evidence for each switch and the recipe's time on a 2-core CPU;
``scripts/train_real.sh`` runs it (and, with BASELINES=1, the single-task baselines).
"""

import os

import ml_collections

from multimix_jax.config_base import base_config, data_spec
from multimix_jax.variants import apply_variant


def get_config(variant: str = "multimix") -> ml_collections.ConfigDict:
    """``configs/shared_real.py:VARIANT`` picks a baseline or ablation (multimix_jax/variants.py)."""
    config = base_config()
    # "" = unset: the command line stops with a sentence, unless a workdir recorded one.
    root = ml_collections.FieldReference(os.environ.get("MULTIMIX_DATA_ROOT", ""))
    config.data_root = root
    join = lambda *parts: root + "/" + "/".join(parts)  # FieldReference arithmetic stays linked
    config.data.cls = data_spec(kind="folder", path=join("kermany_pneumonia_224", "train"))
    config.data.seg = data_spec(kind="folder", path=join("lung_masks_openist"))
    config.data.image_size = 128
    config.data.val_cls = 500
    config.data.val_seg = 40
    config.data.eval_batch_size = 50
    config.data.balance_labeled = True
    config.labels.cls, config.labels.seg = 100, 10
    config.eval.table = ml_collections.ConfigDict(dict(
        in_cls="val_cls", in_seg="val_seg", cross_cls="val_cls_shifted", cross_seg="val_seg_disease"))
    config.eval.shifted_validation = True
    config.eval.flip_tta = False  # neutral at 64 px: docs/results/real_data.md
    config.eval.threshold = "fitted"  # on val_cls + val_cls_shifted, cross-fitted figures
    config.eval.calibrate = True  # a temperature fitted on the same films
    config.augment.seg_joint = True  # 10 masks: joint flip/crop/rotation of image and mask
    config.augment.acquisition = True
    config.augment.opacity_prob = 0.5
    config.augment.occlusion_prob = 0.5  # docs/results/occlusion_128px.md
    config.loss.dice_weight = 10.0  # alpha, 5 in the paper: docs/results/occlusion_128px.md
    config.optim.learning_rate = 1e-3
    # One x0.1 step at 1122 of 1500 steps (2.45 epochs of 458 steps) in steps, so the U-Net
    # baseline, whose epoch is 14 steps of masks, keeps the same schedule.
    config.optim.lr_decay_steps = 1122
    config.optim.ema_decay = 0.99
    config.train.num_steps = 1500
    config.train.best_metric = "shifted_score"
    config.train.log_every_steps = 50
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 250
    return apply_variant(config, variant)
