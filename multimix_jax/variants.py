"""The paper's baselines and ablations as switches on any config (docs/multimix.md, Paper results).

Each variant only flips component flags, so users can build their own combination with the
same flags: tasks.{classification,segmentation}, loss.fixmatch, model.use_bridge, loss.kl.
"""

from __future__ import annotations

from multimix_jax.names import VAL_CLS, VAL_SEG

VARIANTS: dict[str, dict] = {
    # name: (classification, segmentation, fixmatch, bridge, kl)
    "unet": dict(cls=False, seg=True, fixmatch=False, bridge=False, kl="none"),
    "enc": dict(cls=True, seg=False, fixmatch=False, bridge=False, kl="none"),
    "encssl": dict(cls=True, seg=False, fixmatch=True, bridge=False, kl="none"),
    "umtl": dict(cls=True, seg=True, fixmatch=False, bridge=False, kl="none"),
    "umtls": dict(cls=True, seg=True, fixmatch=False, bridge=True, kl="none"),
    "umtl_ssl": dict(cls=True, seg=True, fixmatch=True, bridge=False, kl="none"),
    "umtl_ssl_s": dict(cls=True, seg=True, fixmatch=True, bridge=True, kl="none"),
    "multimix": dict(cls=True, seg=True, fixmatch=True, bridge=True, kl="bernoulli"),
    "multimix_original_kl": dict(cls=True, seg=True, fixmatch=True, bridge=True, kl="original"),
}
DISPLAY_NAMES = {"unet": "U-Net", "enc": "Enc", "encssl": "EncSSL", "umtl": "UMTL",
                 "umtls": "UMTLS", "umtl_ssl": "UMTL-SSL", "umtl_ssl_s": "UMTL-SSL-S",
                 "multimix": "MultiMix", "multimix_original_kl": "MultiMix-original-KL"}


def apply_variant(config, name: str):
    """Set ``config``'s component flags to the named variant (in place; returns config)."""
    key = name.lower().replace("-", "_")
    if key not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    v = VARIANTS[key]
    config.tasks.classification, config.tasks.segmentation = v["cls"], v["seg"]
    config.loss.fixmatch, config.model.use_bridge, config.loss.kl = v["fixmatch"], v["bridge"], v["kl"]
    config.eval.model_name = DISPLAY_NAMES[key]
    if config.train.best_metric == "val_score" and not (v["cls"] and v["seg"]):
        config.train.best_metric = f"{VAL_CLS}/accuracy" if v["cls"] else f"{VAL_SEG}/dice"
    return config
