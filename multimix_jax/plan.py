"""What a config trains, decided once (docs/multimix.md, Losses): the batch streams, the loss
terms with their weights and the step's metric names. The step (``steps``) and the input
pipeline (``input_pipeline.train_dataset``) read these from one ``Plan``.
"""

from __future__ import annotations

import dataclasses

from multimix_jax.errors import UserError
from multimix_jax.names import CLS_LABELED, CLS_UNLABELED, SEG_LABELED, SEG_UNLABELED

# The images each stream feeds the encoder, in the order the step concatenates them.
STREAM_IMAGES = {SEG_LABELED: ("image",), SEG_UNLABELED: ("image",),
                 CLS_LABELED: ("image",), CLS_UNLABELED: ("weak", "strong")}


@dataclasses.dataclass(frozen=True)
class Plan:
    """The streams, loss terms and metrics one config trains with.

    ``streams``: segmentation streams first (the decoder runs on the leading rows).
    ``loss_weights``: (term, weight) pairs in the order the total loss adds them:
    L = alpha L_dice + beta L_kl + L_cls + lambda L_fix (docs/multimix.md, Losses).
    """

    segmentation: bool
    classification: bool
    seg_kl: bool  # the unlabelled segmentation stream and its KL term
    fixmatch: bool  # the unlabelled classification stream and its FixMatch term
    streams: tuple[str, ...]
    loss_weights: tuple[tuple[str, float], ...]
    metric_names: tuple[str, ...]

    @classmethod
    def from_config(cls, config) -> "Plan":
        """The plan of ``config.tasks`` and ``config.loss``."""
        loss = config.loss
        segmentation, classification = bool(config.tasks.segmentation), bool(
            config.tasks.classification)
        seg_kl = segmentation and loss.kl != "none"
        fixmatch = classification and bool(loss.fixmatch)
        streams, weights, metrics = [], [], ["loss"]
        if segmentation:
            streams.append(SEG_LABELED)
            weights.append(("dice", loss.dice_weight))
            if seg_kl:
                streams.append(SEG_UNLABELED)
                weights.append(("kl", loss.kl_weight))
        if classification:
            streams.append(CLS_LABELED)
            weights.append(("cls", loss.cls_weight))
            metrics += ["cls_loss", "accuracy"]
            if fixmatch:
                streams.append(CLS_UNLABELED)
                weights.append(("fixmatch", loss.fixmatch_weight))
                metrics += ["fixmatch_loss", "mask_rate"]
        if segmentation:
            metrics += ["dice_loss", "train_dice"] + (["kl_loss"] if seg_kl else [])
        if not streams:
            raise UserError("config.tasks enables neither classification nor segmentation")
        return cls(segmentation=segmentation, classification=classification, seg_kl=seg_kl,
                   fixmatch=fixmatch, streams=tuple(streams), loss_weights=tuple(weights),
                   metric_names=tuple(metrics))

    @property
    def seg_streams(self) -> tuple[str, ...]:
        """The streams the decoder segments (the leading ones of ``streams``)."""
        return tuple(s for s in self.streams if s in (SEG_LABELED, SEG_UNLABELED))
