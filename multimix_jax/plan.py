"""What a config trains, decided once (docs/multimix.md, Losses): the batch streams, the loss
terms with their weights and the step's metric names. The step (``steps``) and the input
pipeline (``input_pipeline.train_dataset``) read these from one ``Plan``.
"""

from __future__ import annotations

import dataclasses

from multimix_jax.errors import UserError
from multimix_jax.names import CLS_LABELED, CLS_UNLABELED, SEG_LABELED, SEG_UNLABELED

# The images each stream feeds the encoder, in the order the step concatenates them; with
# the occlusion-consistency term the unlabelled segmentation stream adds its "occluded" view.
STREAM_IMAGES = {SEG_LABELED: ("image",), SEG_UNLABELED: ("image",),
                 CLS_LABELED: ("image",), CLS_UNLABELED: ("weak", "strong")}
OCCLUDED = "occluded"
# The share of the unlabelled segmentation films whose occluded view is segmented: each such
# row costs the step a saliency pass and a decoder pass, the dearest rows of the step.
OCCLUDED_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Plan:
    """The streams, loss terms and metrics one config trains with.

    ``streams``: segmentation streams first (the decoder runs on the leading rows).
    ``loss_weights``: (term, weight) pairs in the order the total loss adds them:
    L = alpha L_dice + beta L_kl + gamma L_occ + L_cls + lambda L_fix (docs/multimix.md,
    Losses), gamma = 0 in the paper.
    """

    segmentation: bool
    classification: bool
    seg_kl: bool  # the KL term on the unlabelled segmentation stream
    seg_consistency: bool  # the occlusion-consistency term on the same stream
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
        gamma = float(loss.get("seg_consistency_weight", 0.0))  # checked by config_check
        seg_consistency = segmentation and gamma > 0
        fixmatch = classification and bool(loss.fixmatch)
        streams, weights, metrics = [], [], ["loss"]
        if segmentation:
            streams.append(SEG_LABELED)
            weights.append(("dice", loss.dice_weight))
            if seg_kl or seg_consistency:
                streams.append(SEG_UNLABELED)
            if seg_kl:
                weights.append(("kl", loss.kl_weight))
            if seg_consistency:
                weights.append(("occlusion", gamma))
        if classification:
            streams.append(CLS_LABELED)
            weights.append(("cls", loss.cls_weight))
            metrics += ["cls_loss", "accuracy"]
            if fixmatch:
                streams.append(CLS_UNLABELED)
                weights.append(("fixmatch", loss.fixmatch_weight))
                metrics += ["fixmatch_loss", "mask_rate"]
        if segmentation:
            metrics += ["dice_loss", "train_dice"] + (["kl_loss"] if seg_kl else []) + (
                ["occlusion_loss"] if seg_consistency else [])
        if not streams:
            raise UserError("config.tasks enables neither classification nor segmentation")
        return cls(segmentation=segmentation, classification=classification, seg_kl=seg_kl,
                   seg_consistency=seg_consistency, fixmatch=fixmatch, streams=tuple(streams),
                   loss_weights=tuple(weights),
                   metric_names=tuple(metrics))

    def stream_images(self, stream: str) -> tuple[str, ...]:
        """The image keys ``stream`` feeds the encoder, in the order the step concatenates them."""
        extra = (OCCLUDED,) if stream == SEG_UNLABELED and self.seg_consistency else ()
        return STREAM_IMAGES[stream] + extra

    def image_rows(self, key: str, batch_rows: int) -> int:
        """How many of a stream's ``batch_rows`` images under ``key`` the step feeds the
        encoder: all, but for the occluded view (the first ``OCCLUDED_SHARE``)."""
        return max(1, int(round(OCCLUDED_SHARE * batch_rows))) if key == OCCLUDED else batch_rows

    @property
    def seg_streams(self) -> tuple[str, ...]:
        """The streams the decoder segments (the leading ones of ``streams``)."""
        return tuple(s for s in self.streams if s in (SEG_LABELED, SEG_UNLABELED))
