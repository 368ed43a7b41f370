"""A baseline or ablation of the paper on the default (synthetic) setup.

  python -m multimix_jax.main --config configs/baseline.py:umtls --workdir runs/umtls

Variants (multimix_jax/variants.py): unet, enc, encssl, umtl, umtls, umtl_ssl, umtl_ssl_s,
multimix, multimix_original_kl. The same flags apply to any config, e.g.
``--config configs/shared_real.py --config.loss.fixmatch=False --config.model.use_bridge=False``.
"""

from configs import default
from multimix_jax.variants import apply_variant


def get_config(variant: str = "multimix"):
    return apply_variant(default.get_config(), variant)
