"""Fine-tune a trained ``configs/shared_real.py`` run on a new site: ~20 of the site's labelled
films, the rest of its films as the unlabelled pool, a few steps at a lower learning rate,
sized to take minutes on 2 CPU cores (docs/multimix.md, A new site).

  python -m multimix_jax.main --config configs/finetune_site.py --workdir runs/site \
      --config.data_root=SITE --config.init_from=runs/real
  python -m multimix_jax.main --config configs/finetune_site.py --workdir runs/site \
      --mode evaluate --adapt_prior --eval_cls_folder site_test=DIR

SITE holds ``site_films/{NORMAL,PNEUMONIA}/*`` (the site's films, DICOM or images: 20 of them
are the labelled budget, 30 a validation hold-out for the checkpoint and the threshold, and
the rest the unlabelled pool, whose folder labels are never read) and
``lung_masks_openist/{images,masks}`` (the masks the source run trained on: a link to them
will do, so segmentation keeps its labels). ``init_from`` names the source run's workdir; the
run starts from its best checkpoint's (EMA) parameters with a fresh optimizer, schedule and
step counter. Everything else is the shared_real recipe (128 px, acquisition jitter, painted
opacities, shifted validation), so the model fits the source run's.
"""

import importlib.util
import pathlib

import ml_collections


def _shared_real():
    """configs/shared_real.py, found beside this file (configs/ is not an installed package)."""
    path = pathlib.Path(__file__).with_name("shared_real.py")
    spec = importlib.util.spec_from_file_location("multimix_configs_shared_real", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(variant: str = "multimix") -> ml_collections.ConfigDict:
    """``configs/finetune_site.py:VARIANT`` (multimix_jax/variants.py), as shared_real."""
    config = _shared_real().get_config(variant)
    config.data.cls.path = config.get_ref("data_root") + "/site_films"
    config.labels.cls = 20
    config.data.val_cls = 30
    config.optim.learning_rate = 1e-4  # the source run's is 1e-3: adapt, do not retrain
    config.optim.lr_decay_epochs = config.optim.lr_decay_steps = 0  # constant
    config.optim.ema_decay = 0.9  # a few steps: a short average
    config.train.num_steps = 60
    config.train.log_every_steps = 10
    config.train.eval_every_steps = 20
    config.train.checkpoint_every_steps = 20
    return config
