"""Grain input pipelines (multimix_jax/input_pipeline.py) on tiny synthetic data (32 px).

Checks the five training streams' batch structure, the label budgets and the validation
hold-out, the weak/strong pair, determinism and per-epoch reshuffling, iterator state
through Orbax, the padded evaluation batches and the placement on the device mesh.
"""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import grain
from multimix_jax import augment, input_pipeline, sharding
from multimix_jax.plan import Plan
from tests.conftest import tiny_config

S = 32
ALL_STREAMS = ("seg_labeled", "seg_unlabeled", "cls_labeled", "cls_unlabeled")


# --------------------------------------------------------------------------- helpers
def pipeline_config(per_stream: int = 2, **overrides):
    config = tiny_config(image_size=S, per_stream=per_stream)
    config.data.cls.num_examples, config.data.seg.num_examples = 40, 24
    config.data.val_cls, config.data.val_seg = 8, 4
    config.labels.cls, config.labels.seg = 8, 4
    config.update_from_flattened_dict(overrides)  # e.g. {"tasks.segmentation": False}
    return config


@pytest.fixture(scope="module")
def config():
    return pipeline_config()


@pytest.fixture(scope="module")
def splits(config):
    return input_pipeline.make_splits(config)


def iterator(config, splits, streams=None):
    """The pipeline's batches of ``streams`` (default: the config's plan's, as training does)."""
    return iter(input_pipeline.train_dataset(config, splits, streams))


def take(it, n):
    return [next(it) for _ in range(n)]


def flat(batch):
    return {(s, k): v for s, fields in batch.items() for k, v in fields.items()}


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        fx, fy = flat(x), flat(y)
        assert fx.keys() == fy.keys()
        for key in fx:
            np.testing.assert_array_equal(fx[key], fy[key], err_msg=str(key))


def batches_differ(a, b):
    return any(not np.array_equal(flat(x)[k], flat(y)[k]) for x, y in zip(a, b) for k in flat(x))


def image_bytes(source) -> list[bytes]:
    return [np.ascontiguousarray(source[i]["image"]).tobytes() for i in range(len(source))]


def index_of(source):
    """Image bytes -> index, for identifying which source example a batch entry came from."""
    table = {}
    for i, b in enumerate(image_bytes(source)):
        table.setdefault(b, i)
    return table


def labelled_source(n: int, seed: int = 0, size: int = S) -> input_pipeline.ArraySource:
    """Distinct random images whose label is their index (identifies an entry exactly)."""
    rng = np.random.default_rng(seed)
    return input_pipeline.ArraySource({
        "image": rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        "label": np.arange(n, dtype=np.int32)})


# --------------------------------------------------------------------------- structure
def test_batch_structure_all_streams(config, splits):
    streams = Plan.from_config(config).streams
    assert set(streams) == set(ALL_STREAMS)
    batch = next(iterator(config, splits))
    assert tuple(batch) == streams
    n = config.data.per_stream_batch
    expected_fields = {"seg_labeled": {"image", "mask"}, "seg_unlabeled": {"image"},
                       "cls_labeled": {"image", "label"}, "cls_unlabeled": {"weak", "strong"}}
    for stream, fields in batch.items():
        assert set(fields) == expected_fields[stream]
        for key, value in fields.items():
            assert isinstance(value, np.ndarray)
            if key == "label":
                assert value.shape == (n,) and value.dtype == np.int32
                assert set(np.unique(value)) <= {0, 1}
            else:
                assert value.shape == (n, S, S, 1) and value.dtype == np.uint8, (stream, key)
    mask = batch["seg_labeled"]["mask"]
    assert set(np.unique(mask)) <= {0, 1} and mask.any()


@pytest.mark.parametrize("overrides, expected", [
    ({"tasks.segmentation": False, "loss.fixmatch": False}, ("cls_labeled",)),
    ({"tasks.segmentation": False}, ("cls_labeled", "cls_unlabeled")),
    ({"tasks.classification": False, "loss.kl": "none"}, ("seg_labeled",)),
    ({"tasks.classification": False}, ("seg_labeled", "seg_unlabeled")),
])
def test_baseline_configs_give_only_their_streams(overrides, expected):
    config = pipeline_config(**overrides)
    assert Plan.from_config(config).streams == expected
    splits = input_pipeline.make_splits(config)
    off = "cls" if not config.tasks.classification else "seg"
    assert getattr(splits, f"{off}_labeled") is None and getattr(splits, f"{off}_val") is None
    batch = next(iterator(config, splits))
    assert tuple(batch) == expected


def test_empty_stream_is_an_error(config, splits):
    empty = input_pipeline.DataSplits(cls_labeled=input_pipeline.SubsetSource(splits.cls_labeled, []))
    with pytest.raises(ValueError, match="cls_labeled has no examples"):
        input_pipeline.train_dataset(config, empty, ["cls_labeled"])


# --------------------------------------------------------------------------- splits
def test_summary_does_not_copy_the_sources():
    class NoCopy(input_pipeline.ArraySource):
        def __deepcopy__(self, memo):
            raise AssertionError("summary() deep-copied a source")

    source = NoCopy({"image": np.zeros((5, S, S), np.uint8)})
    splits = input_pipeline.DataSplits(cls_labeled=source, cls_val=source)
    assert splits.summary()["cls_labeled"] == 5 and splits.summary()["seg_val"] == 0


def test_split_sizes_and_disjoint_validation(config, splits):
    n_cls, n_seg = config.data.cls.num_examples, config.data.seg.num_examples
    assert splits.summary() == {
        "cls_labeled": 8, "cls_unlabeled": n_cls - 8 - 8, "seg_labeled": 4,
        "seg_unlabeled": n_seg - 4 - 4, "cls_val": 8, "seg_val": 4}
    for short in ("cls", "seg"):
        val = image_bytes(getattr(splits, f"{short}_val"))
        lab = image_bytes(getattr(splits, f"{short}_labeled"))
        unl = image_bytes(getattr(splits, f"{short}_unlabeled"))
        pool = val + lab + unl
        assert len(set(pool)) == len(pool), "synthetic examples must be distinct to compare"
        assert not set(val) & (set(lab) | set(unl))  # never trained on
        assert not set(lab) & set(unl)  # an int budget splits the train pool


def test_all_labels_budget_uses_the_whole_train_pool():
    config = pipeline_config(**{"labels.cls": "all", "labels.seg": "all"})
    splits = input_pipeline.make_splits(config)
    for short, n, n_val in (("cls", 40, 8), ("seg", 24, 4)):
        lab = image_bytes(getattr(splits, f"{short}_labeled"))
        unl = image_bytes(getattr(splits, f"{short}_unlabeled"))
        val = image_bytes(getattr(splits, f"{short}_val"))
        assert lab == unl and len(lab) == n - n_val
        assert not set(lab) & set(val)


def test_split_seed_changes_the_draw(splits):
    same = input_pipeline.make_splits(pipeline_config())
    other = input_pipeline.make_splits(pipeline_config(**{"data.split_seed": 1}))
    for field in ("cls_labeled", "seg_labeled", "cls_val"):
        assert image_bytes(getattr(same, field)) == image_bytes(getattr(splits, field))
        assert set(image_bytes(getattr(other, field))) != set(image_bytes(getattr(splits, field)))


def test_split_off_budget_larger_than_pool_is_an_error():
    with pytest.raises(ValueError, match="cannot take 50 of 40"):
        input_pipeline.split_off(40, 50, 0)


def test_named_validation_split_of_synthetic_data_is_an_error():
    config = pipeline_config(**{"data.val_cls": "split:validation"})
    with pytest.raises(ValueError, match="no named splits"):
        input_pipeline.make_splits(config)


def _write_split_folder(root, rng):
    from PIL import Image
    counts = {"train": 5, "val": 3, "test": 2}
    for split, n in counts.items():
        for i in range(n):
            cls = ("NORMAL", "PNEUMONIA")[i % 2]
            path = root / split / cls / f"{split}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (S, S), dtype=np.uint8)).save(path)
    return counts


def test_folder_with_split_subfolders_gives_only_the_requested_split(tmp_path):
    counts = _write_split_folder(tmp_path / "xray", np.random.default_rng(0))
    spec = {"kind": "folder", "path": str(tmp_path / "xray")}
    load = lambda split: input_pipeline.load_source(spec, "classification", S, split=split)
    train, val, test = load("train"), load("validation"), load("test")
    assert (len(train), len(val), len(test)) == (counts["train"], counts["val"], counts["test"])
    assert len(load("val")) == counts["val"]  # folder aliases accepted
    assert len(load(None)) == sum(counts.values())
    sets = [set(image_bytes(s)) for s in (train, val, test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    with pytest.raises(ValueError, match="no split 'holdout'"):
        load("holdout")
    # Through the config: train from the train split only, validate on the folder's own split.
    config = pipeline_config(**{"tasks.segmentation": False, "data.val_cls": "split:validation",
                                "labels.cls": 2})
    config.data.cls.kind, config.data.cls.path = "folder", str(tmp_path / "xray")
    splits = input_pipeline.make_splits(config)
    assert splits.summary()["cls_val"] == counts["val"]
    assert splits.summary()["cls_labeled"] + splits.summary()["cls_unlabeled"] == counts["train"]



def test_a_held_out_split_loses_its_copies_of_training_images(tmp_path):
    """Duplicates are found across the folder's splits; the training split keeps its image."""
    import shutil
    counts = _write_split_folder(tmp_path / "xray", np.random.default_rng(2))
    root = tmp_path / "xray"
    train_file = sorted((root / "train" / "NORMAL").glob("*.png"))[0]
    shutil.copy(train_file, root / "val" / "NORMAL" / "copy_of_train.png")
    shutil.copy(train_file, root / "test" / "NORMAL" / "copy_of_train.png")
    spec = {"kind": "folder", "path": str(root)}
    load = lambda split: input_pipeline.load_source(spec, "classification", S, split=split)
    assert (len(load("train")), len(load("val")), len(load("test"))) == (
        counts["train"], counts["val"], counts["test"])
    train, val = set(image_bytes(load("train"))), set(image_bytes(load("val")))
    assert len(train) == counts["train"] and not train & val

# --------------------------------------------------------------------------- augmentation
def test_streams_carry_their_source_examples_and_weak_strong_share_one(monkeypatch, splits):
    """pad 0 and an identity-only RandAugment pool: every augmented image is its source or
    the source's mirror image, so each entry can be traced back (labels and masks too)."""
    monkeypatch.setattr(augment, "RAND_AUGMENT_OPS", {"Identity": augment.RAND_AUGMENT_OPS["Identity"]})
    config = pipeline_config(per_stream=4, **{"augment.pad_fraction": 0.0})
    streams = Plan.from_config(config).streams
    find = {s: index_of(getattr(splits, s)) for s in streams}

    def trace(stream, image):
        image = image[..., 0]
        plain = find[stream].get(image.tobytes())
        mirrored = find[stream].get(np.ascontiguousarray(image[:, ::-1]).tobytes())
        assert plain is not None or mirrored is not None, f"{stream}: not from its source"
        return plain if plain is not None else mirrored

    flipped = 0
    for batch in take(iterator(config, splits), 3):
        for j in range(config.data.per_stream_batch):
            i = trace("cls_labeled", batch["cls_labeled"]["image"][j])
            assert batch["cls_labeled"]["label"][j] == splits.cls_labeled[i]["label"]
            weak, strong = batch["cls_unlabeled"]["weak"][j], batch["cls_unlabeled"]["strong"][j]
            assert trace("cls_unlabeled", weak) == trace("cls_unlabeled", strong)
            flipped += not np.array_equal(weak, strong)  # independent flips
            # The original does not augment segmentation images (augment.seg_joint=False).
            i = find["seg_labeled"][batch["seg_labeled"]["image"][j, ..., 0].tobytes()]
            np.testing.assert_array_equal(batch["seg_labeled"]["mask"][j, ..., 0],
                                          splits.seg_labeled[i]["mask"])
            assert batch["seg_unlabeled"]["image"][j, ..., 0].tobytes() in find["seg_unlabeled"]
    assert flipped > 0


def test_weak_with_real_randaugment_is_source_or_mirror_and_strong_differs(splits):
    config = pipeline_config(per_stream=4, **{"augment.pad_fraction": 0.0})
    find = index_of(splits.cls_unlabeled)
    changed = 0
    for batch in take(iterator(config, splits), 2):
        for weak, strong in zip(batch["cls_unlabeled"]["weak"][..., 0],
                                batch["cls_unlabeled"]["strong"][..., 0]):
            assert (weak.tobytes() in find or
                    np.ascontiguousarray(weak[:, ::-1]).tobytes() in find)
            changed += not (np.array_equal(strong, weak) or np.array_equal(strong, weak[:, ::-1]))
    assert changed > 0


def test_default_padding_crops_differ_from_source(config, splits):
    find = index_of(splits.cls_labeled)
    images = np.concatenate([b["cls_labeled"]["image"] for b in take(iterator(config, splits), 4)])
    exact = sum(im[..., 0].tobytes() in find or
                np.ascontiguousarray(im[:, ::-1, 0]).tobytes() in find for im in images)
    assert exact < len(images)  # random reflect-pad crops move the image


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_batches_other_seed_other_batches(config, splits):
    first = take(iterator(config, splits), 3)
    assert_batches_equal(first, take(iterator(config, splits), 3))
    other = take(iterator(pipeline_config(**{"seed": 1}), splits), 3)
    assert batches_differ(first, other)


def test_reshuffled_every_epoch_and_each_epoch_is_a_permutation():
    n, per_stream = 12, 4
    config = pipeline_config(per_stream=per_stream)
    splits = input_pipeline.DataSplits(cls_labeled=labelled_source(n))
    it = iterator(config, splits, ["cls_labeled"])
    epochs = [np.concatenate([b["cls_labeled"]["label"] for b in take(it, n // per_stream)])
              for _ in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert not np.array_equal(epochs[0], np.arange(n))  # shuffled at all


def test_streams_are_shuffled_independently():
    n, per_stream = 12, 4
    config = pipeline_config(per_stream=per_stream)
    source = labelled_source(n)
    splits = input_pipeline.DataSplits(cls_labeled=source, seg_labeled=input_pipeline.ArraySource(
        {"image": np.stack([source[i]["image"] for i in range(n)]),
         "mask": np.zeros((n, S, S), np.uint8)}))
    batch = next(iterator(config, splits, ["seg_labeled", "cls_labeled"]))
    find = index_of(source)
    seg_order = [find[im[..., 0].tobytes()] for im in batch["seg_labeled"]["image"]]
    assert seg_order != batch["cls_labeled"]["label"].tolist()


def test_worker_processes_give_the_same_batches(config, splits):
    in_process = take(iterator(config, splits), 3)
    mp_config = pipeline_config(**{"data.worker_count": 1})
    it = iterator(mp_config, splits)
    try:
        assert_batches_equal(in_process, take(it, 3))
    finally:
        it.close()


def test_worker_config_does_not_need_parsed_absl_flags(config, splits):
    """Grain's worker start reads an absl flag; outside absl.app.run it must not fail."""
    from absl import flags
    was_parsed = flags.FLAGS.is_parsed()
    flags.FLAGS.unparse_flags()
    try:
        input_pipeline.train_dataset(pipeline_config(**{"data.worker_count": 1}), splits,
                                     Plan.from_config(config).streams)
        assert flags.FLAGS.is_parsed()
    finally:
        if was_parsed:
            flags.FLAGS.mark_as_parsed()


# --------------------------------------------------------------------------- iterator state
def test_iterator_state_restores_the_same_batches(config, splits):
    it = iterator(config, splits)
    take(it, 2)
    state = it.get_state()
    expected = take(it, 2)
    fresh = iterator(config, splits)
    fresh.set_state(state)
    assert_batches_equal(expected, take(fresh, 2))


def test_iterator_state_through_orbax(tmp_path, config, splits):
    it = iterator(config, splits)
    take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt",
                               options=ocp.CheckpointManagerOptions(create=True)) as manager:
        manager.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
    expected = take(it, 2)
    fresh = iterator(config, splits)
    take(fresh, 5)  # restoring must overwrite the position, not continue from it
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        assert manager.latest_step() == 2
        manager.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    assert_batches_equal(expected, take(fresh, 2))


# --------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("n", [8, 9, 3])
def test_eval_batches_cover_every_example_once_in_order(n):
    batch_size = 4
    source = labelled_source(n, seed=n)
    batches = list(input_pipeline.eval_batches(source, batch_size, S))
    assert len(batches) == -(-n // batch_size)
    for b in batches:
        assert b["image"].shape == (batch_size, S, S, 1) and b["image"].dtype == np.uint8
        assert b["label"].shape == (batch_size,) and b["label"].dtype == np.int32
        assert b["valid"].shape == (batch_size,) and b["valid"].dtype == bool
    valid = np.concatenate([b["valid"] for b in batches])
    assert valid.sum() == n and valid[:n].all()  # padding only at the end
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels[valid], np.arange(n))
    for i in range(n):
        np.testing.assert_array_equal(images[i, ..., 0], source[i]["image"])
    assert not images[~valid].any() and not labels[~valid].any()  # zero padding


def test_eval_batches_of_segmentation_source_carry_masks(splits):
    source = splits.seg_val
    batches = list(input_pipeline.eval_batches(source, 3, S))
    masks = np.concatenate([b["mask"] for b in batches])
    valid = np.concatenate([b["valid"] for b in batches])
    assert masks.dtype == np.uint8 and masks.shape == (len(valid), S, S, 1)
    for i in range(len(source)):
        np.testing.assert_array_equal(masks[i, ..., 0], source[i]["mask"])
    assert "label" in batches[0]  # the synthetic source also carries labels


# --------------------------------------------------------------------------- errors
def test_wrong_image_size_is_a_clear_error(config):
    small = labelled_source(6, size=16)
    splits = input_pipeline.DataSplits(cls_labeled=small)
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(32, 32\)"):
        next(iterator(config, splits, ["cls_labeled"]))
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(32, 32\)"):
        next(input_pipeline.eval_batches(small, 4, S))


def test_wrong_mask_size_is_a_clear_error(config):
    bad = input_pipeline.ArraySource({"image": np.zeros((4, S, S), np.uint8),
                                      "mask": np.zeros((4, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match=r"mask of shape \(8, 8\)"):
        next(iterator(config, input_pipeline.DataSplits(seg_labeled=bad), ["seg_labeled"]))


# --------------------------------------------------------------------------- device
def test_shard_batch_places_streams_on_the_mesh(config, splits):
    mesh = sharding.make_mesh()
    batch = next(iterator(config, splits))
    placed = sharding.shard_batch(batch, mesh)
    expected = sharding.data_sharding(mesh)
    assert set(placed) == set(batch)
    for key, host in flat(batch).items():
        stream, field = key
        array = placed[stream][field]
        assert isinstance(array, jax.Array)
        assert array.sharding.is_equivalent_to(expected, array.ndim)
        assert array.shape == host.shape and array.dtype == host.dtype
        np.testing.assert_array_equal(np.asarray(array), host)


def test_tfds_validation_split_is_not_the_training_split(tmp_path):
    """A tfds spec names its training split ('split': 'train', as configs/paper.py does);
    'data.val_cls=split:validation' must still read the validation split, never the train one."""
    from multimix_jax.datasets import builders
    counts = _write_split_folder(tmp_path / "xray", np.random.default_rng(1))
    builders.build_dataset("kermany", tmp_path / "xray", tmp_path / "tfds", S)  # Kermany layout
    config = pipeline_config(**{"tasks.segmentation": False, "data.val_cls": "split:validation",
                                "labels.cls": 2})
    config.data.cls = dict(kind="tfds", name="kermany", data_dir=str(tmp_path / "tfds"),
                           split="train")
    splits = input_pipeline.make_splits(config)
    summary = splits.summary()
    assert summary["cls_val"] == counts["val"]
    assert summary["cls_labeled"] + summary["cls_unlabeled"] == counts["train"]
    train_images = set(image_bytes(splits.cls_labeled)) | set(image_bytes(splits.cls_unlabeled))
    assert not train_images & set(image_bytes(splits.cls_val))
