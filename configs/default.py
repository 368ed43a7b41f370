"""Default: MultiMix on the embedded synthetic chest X-rays, sized for a 2-core CPU.

  python -m multimix_jax.main --config configs/default.py --workdir runs/default

64x64 images, the paper's widths, budgets |D_l^c|=100, |D_l^s|=10, 5 streams x 10 images.
Classification at P(pneumonia) >= 0.5 (eval.threshold='fixed'; docs/multimix.md, Decision
threshold and calibration). Baselines and ablations: ``--config configs/default.py:umtls`` (unet, enc, encssl, umtl,
umtls, umtl_ssl, umtl_ssl_s, multimix, multimix_original_kl; see multimix_jax/variants.py).
What it reaches and how long it takes: the README's results table, measured in
docs/results/default.md (with the command, commit, seeds and intervals).
"""

import ml_collections

from multimix_jax.config_base import base_config
from multimix_jax.variants import apply_variant


def get_config(variant: str = "multimix") -> ml_collections.ConfigDict:
    """``configs/default.py:VARIANT`` picks a baseline or ablation (multimix_jax/variants.py)."""
    config = base_config()
    config.data.image_size = 64
    config.data.cls.num_examples = 3000
    config.data.seg.num_examples = 600
    config.data.val_cls = 300
    config.data.val_seg = 60
    config.data.eval_sets = ml_collections.ConfigDict({
        "test_cls": {"task": "classification", "kind": "synthetic", "num_examples": 500},
        "test_seg": {"task": "segmentation", "kind": "synthetic", "num_examples": 100},
    })
    config.eval.table.in_cls, config.eval.table.in_seg = "test_cls", "test_seg"
    config.optim.learning_rate = 1e-3
    config.optim.lr_decay_epochs = 0  # constant
    config.train.num_steps = 600
    config.train.log_every_steps = 25
    config.train.eval_every_steps = 100
    config.train.checkpoint_every_steps = 100
    return apply_variant(config, variant)
