"""The names every layer shares: tasks, training streams, validation sets, class names and the
default decision threshold. Defined here once, below everything; nothing else defines them.
"""

from __future__ import annotations

# Tasks (config.tasks.<task>; each evaluation set is of one task).
CLASSIFICATION, SEGMENTATION = TASKS = ("classification", "segmentation")

# Where a data spec's examples come from (config.data.{cls,seg}.kind, data.eval_sets.*.kind):
# the embedded generator, a folder of the user's films, or a built TFDS dataset.
DATA_KINDS = ("synthetic", "folder", "tfds")

# The training batch's streams (docs/multimix.md, Losses).
SEG_LABELED, SEG_UNLABELED, CLS_LABELED, CLS_UNLABELED = STREAMS = (
    "seg_labeled", "seg_unlabeled", "cls_labeled", "cls_unlabeled")

# Classification labels: the index is the label; folder names are the class names.
CLASS_NAMES = ("NORMAL", "PNEUMONIA")
NORMAL, PNEUMONIA = 0, 1

# Validation sets (held out of training; docs/multimix.md, Shifted validation).
VAL_CLS, VAL_SEG = "val_cls", "val_seg"
VAL_CLS_SHIFTED, VAL_SEG_SHIFTED, VAL_SEG_DISEASE, VAL_SEG_DISEASE_HARD = SHIFTED_SETS = (
    "val_cls_shifted", "val_seg_shifted", "val_seg_disease", "val_seg_disease_hard")

# P(pneumonia) decision threshold when none was fitted (the paper's argmax).
DEFAULT_THRESHOLD = 0.5
# How config.eval.threshold decides: that default, or fitted on the pooled validation.
THRESHOLD_RULES = ("fixed", "fitted")
