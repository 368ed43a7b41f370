"""The base ConfigDict every config in ``configs/`` derives from (docs/multimix.md values).

Every field can be overridden from the command line: ``--config.loss.kl=original``.
"""

from __future__ import annotations

import ml_collections


def int_or_str(value) -> ml_collections.FieldReference:
    """A field that takes a count or a word ('all', 'split:validation') from the command line."""
    return ml_collections.FieldReference(value, field_type=object)


def data_spec(**fields) -> ml_collections.ConfigDict:
    """A training data spec (``config.data.cls`` / ``.seg``) with every field defaulted.

    ``group``: how films are grouped into patients for the seeded splits (docs/multimix.md,
    Data): 'auto' (Kermany patient names, else one per film), 'film' or 'regex:PATTERN'.
    ``unlabeled_extra``: a folder whose images and DICOMs (any layout, labels ignored) join
    the task's unlabelled stream, ``unlabeled_extra_share`` of each unlabelled batch ("": none).
    """
    spec = dict(kind="synthetic", path="", name="", data_dir="", num_examples=0, group="auto",
                unlabeled_extra="", unlabeled_extra_share=0.5)
    spec.update(fields)
    return ml_collections.ConfigDict(spec)


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Data: which sources feed the streams, budgets, sizes, augmentation.
    config.data = ml_collections.ConfigDict()
    config.data.image_size = 256
    config.data.per_stream_batch = 10  # five streams x 10 images, as the paper
    config.data.eval_batch_size = 32
    config.data.worker_count = 0  # Grain worker processes (0 = in the main process)
    config.data.worker_buffer_size = 2
    # Kinds: 'synthetic' (embedded), 'folder' (generic class / images+masks folder),
    # 'tfds' (a built TFDS dataset: name, data_dir).
    config.data.cls = data_spec(num_examples=2000)
    config.data.seg = data_spec(num_examples=400)
    # Held out of training, never trained on: a count, or 'split:NAME' for a dataset's own split.
    config.data.val_cls = int_or_str(200)
    config.data.val_seg = int_or_str(40)
    config.data.synthetic_pneumonia_fraction = 0.5
    config.data.synthetic_seed = 0  # the embedded dataset does not change with config.seed
    config.data.split_seed = 0  # validation hold-out and label-budget draws
    config.data.balance_labeled = False  # labelled cls stream: each class equally often
    # Test sets: name -> {task, kind, path | name+data_dir+split | num_examples}.
    config.data.eval_sets = ml_collections.ConfigDict()

    config.augment = ml_collections.ConfigDict()
    config.augment.pad_fraction = 0.125  # 32 px reflect padding at 256 px
    config.augment.randaugment_num_ops = 2
    config.augment.randaugment_magnitude = 10
    config.augment.seg_joint = False  # the original does not augment segmentation images
    # Recipe for unseen films (docs/multimix.md): acquisition jitter on every view but the
    # pseudo-labelling weak one; random opacities painted inside the labelled lung masks.
    config.augment.acquisition = False
    config.augment.opacity_prob = 0.0
    config.augment.occlusion_prob = 0.0  # dense opacities over the lung border, bright overlays

    # Label budgets |D_l^c| and |D_l^s|: an int or 'all'.
    config.labels = ml_collections.ConfigDict(dict(cls=int_or_str(100), seg=int_or_str(10)))

    config.model = ml_collections.ConfigDict()
    config.model.widths = (16, 32, 64, 128, 256)
    config.model.dropout_rate = 0.25
    config.model.use_bridge = True
    # Compute dtype: 'float32' | 'bfloat16' (convolutions and activations; parameters, norm
    # statistics, logits, losses, saliency and optimizer state stay float32).
    config.model.dtype = "float32"
    config.model.saliency_float32 = True  # bfloat16 runs: the saliency pass stays float32

    config.tasks = ml_collections.ConfigDict(dict(classification=True, segmentation=True))

    config.loss = ml_collections.ConfigDict()
    config.loss.cls_weight = 1.0
    config.loss.fixmatch = True
    config.loss.fixmatch_weight = 0.25  # lambda
    config.loss.threshold = 0.7  # tau
    config.loss.dice_weight = 5.0  # alpha
    config.loss.dice_smooth = 1.0
    config.loss.kl = "bernoulli"  # 'bernoulli' | 'original' (always zero) | 'none'
    config.loss.kl_weight = 0.01  # beta
    # gamma: the mask predicted on an unlabelled segmentation film is the target on the same
    # film under a painted occlusion (docs/multimix.md, Recipe for unseen films); 0: off, the paper.
    config.loss.seg_consistency_weight = 0.0

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-4
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.lr_decay_epochs = 8.0
    config.optim.lr_decay_steps = 0  # > 0: decay every this many steps instead (any variant)
    config.optim.lr_decay_factor = 0.1
    config.optim.ema_decay = 0.0

    config.train = ml_collections.ConfigDict()
    config.train.num_epochs = 100.0  # epoch = one pass over the unlabelled cls set
    config.train.num_steps = -1  # > 0 overrides num_epochs
    config.train.log_every_steps = 50
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
    config.train.keep_checkpoints = 2
    config.train.best_metric = "val_score"  # mean of val accuracy and val Dice
    config.train.num_image_summaries = 4
    # Stop when a log interval's mean loss exceeds this many times the lowest so far (<= 0: off).
    config.train.divergence_factor = 20.0

    # Which evaluation sets fill the paper's Table-2 columns (in-domain, cross-domain).
    config.eval = ml_collections.ConfigDict(dict(
        model_name="MultiMix", num_example_pngs=8,
        table=ml_collections.ConfigDict(dict(in_cls="", in_seg="", cross_cls="", cross_seg=""))))
    # Shifted validation (docs/multimix.md, Shifted validation): validate also on shifted
    # copies of the hold-outs; with train.best_metric='shifted_score' they select the model.
    config.eval.shifted_validation = False
    config.eval.flip_tta = False  # average the predictions of each image and its mirror
    # The decision on P(pneumonia), one rule for model selection and deployment
    # (docs/multimix.md, Decision threshold and calibration): 'fixed' = names.DEFAULT_THRESHOLD
    # (the paper's argmax) | 'fitted' = the balanced-accuracy threshold fitted on the pooled
    # classification validation; calibrate: fit a temperature on the same films first.
    config.eval.threshold = "fixed"
    config.eval.calibrate = False

    # Predicted masks at 0.5 post-processed in evaluate/predict: 'none' | 'lungs' (the two
    # largest components, specks dropped, holes filled; docs/multimix.md, A new site).
    config.eval.mask_postprocess = "none"

    # Fine-tuning (docs/multimix.md, A new site): a fresh run starts from this trained
    # workdir's best checkpoint's inference parameters, with a new optimizer, schedule and
    # step counter ("" = from scratch). A resume restores its own checkpoint instead.
    config.init_from = ""

    config.distributed = False  # call jax.distributed.initialize() (multi-host)
    return config
