"""Sources and splits (multimix_jax/sources.py) and Grain input pipelines
(multimix_jax/input_pipeline.py) on tiny synthetic data (32 px).

Checks the five training streams' batch structure, the label budgets and the validation
hold-out, the weak/strong pair, determinism and per-epoch reshuffling, iterator state
through Orbax, the padded evaluation batches and the placement on the device mesh.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import grain
from multimix_jax import augment, input_pipeline, sharding, sources, splitting
from multimix_jax.errors import UserError
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
    return sources.make_splits(config)


def iterator(config, splits, streams=None):
    """The pipeline's batches of ``streams`` (default: the config's plan's, as training does)."""
    streams = Plan.from_config(config).streams if streams is None else streams
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


def labelled_source(n: int, seed: int = 0, size: int = S) -> sources.ArraySource:
    """Distinct random images whose label is their index (identifies an entry exactly)."""
    rng = np.random.default_rng(seed)
    return sources.ArraySource({
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
    splits = sources.make_splits(config)
    off = "cls" if not config.tasks.classification else "seg"
    assert getattr(splits, f"{off}_labeled") is None and getattr(splits, f"{off}_val") is None
    batch = next(iterator(config, splits))
    assert tuple(batch) == expected


def test_the_occluded_view_is_the_clean_view_painted_and_leaves_every_other_array_as_it_was(
        config, splits):
    occluding = pipeline_config(**{"loss.seg_consistency_weight": 5.0})
    plain, painted = take(iterator(config, splits), 2), take(iterator(occluding, splits), 2)
    for a, b in zip(plain, painted):
        occluded = b["seg_unlabeled"].pop("occluded")
        assert occluded.shape == a["seg_unlabeled"]["image"].shape and occluded.dtype == np.uint8
        assert not np.array_equal(occluded, b["seg_unlabeled"]["image"])
    assert_batches_equal(plain, painted)


def test_typical_lungs_are_two_mirrored_lungs_covering_a_quarter_of_the_film():
    from scipy import ndimage
    lungs = augment.typical_lungs(128)
    assert ndimage.label(lungs)[1] == 2 and np.array_equal(lungs, lungs[:, ::-1])
    assert 0.2 < lungs.mean() < 0.3 and not lungs[0].any() and not lungs[:, 64].any()


def test_empty_stream_is_an_error(config, splits):
    empty = sources.DataSplits(cls_labeled=sources.SubsetSource(splits.cls_labeled, []))
    with pytest.raises(ValueError, match="cls_labeled has no examples"):
        input_pipeline.train_dataset(config, empty, ["cls_labeled"])


# --------------------------------------------------------------------------- splits
def test_summary_does_not_copy_the_sources():
    class NoCopy(sources.ArraySource):
        def __deepcopy__(self, memo):
            raise AssertionError("summary() deep-copied a source")

    source = NoCopy({"image": np.zeros((5, S, S), np.uint8)})
    splits = sources.DataSplits(cls_labeled=source, cls_val=source)
    summary = splits.summary()
    assert summary["cls_labeled"] == {"films": 5, "groups": 5}
    assert summary["seg_val"] == {"films": 0, "groups": 0}


def test_split_sizes_and_disjoint_validation(config, splits):
    n_cls, n_seg = config.data.cls.num_examples, config.data.seg.num_examples
    films = {name: v["films"] for name, v in splits.summary().items() if name != "grouping"}
    assert films == {
        "cls_labeled": 8, "cls_unlabeled": n_cls - 8 - 8, "seg_labeled": 4,
        "seg_unlabeled": n_seg - 4 - 4, "cls_val": 8, "seg_val": 4,
        "cls_unlabeled_extra": 0, "seg_unlabeled_extra": 0}
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
    splits = sources.make_splits(config)
    for short, n, n_val in (("cls", 40, 8), ("seg", 24, 4)):
        lab = image_bytes(getattr(splits, f"{short}_labeled"))
        unl = image_bytes(getattr(splits, f"{short}_unlabeled"))
        val = image_bytes(getattr(splits, f"{short}_val"))
        assert lab == unl and len(lab) == n - n_val
        assert not set(lab) & set(val)


def test_split_seed_changes_the_draw(splits):
    same = sources.make_splits(pipeline_config())
    other = sources.make_splits(pipeline_config(**{"data.split_seed": 1}))
    for field in ("cls_labeled", "seg_labeled", "cls_val"):
        assert image_bytes(getattr(same, field)) == image_bytes(getattr(splits, field))
        assert set(image_bytes(getattr(other, field))) != set(image_bytes(getattr(splits, field)))


def test_split_off_budget_larger_than_pool_is_an_error():
    with pytest.raises(UserError, match="labels.cls=50 cannot be taken from 40 films"):
        splitting.split_off(range(40), 50, 0, "labels.cls")


@pytest.mark.parametrize("count", [40, 41, "all"])
def test_a_hold_out_as_large_as_its_set_is_refused(count):
    with pytest.raises(UserError, match="data.val_cls="):
        splitting.split_off(range(40), count, 0, "data.val_cls", hold_out=True)
    config = pipeline_config(**{"data.val_cls": count})
    with pytest.raises(UserError, match="data.val_cls="):
        sources.make_splits(config)


def test_a_hold_out_of_one_patient_that_is_the_whole_set_is_refused():
    with pytest.raises(UserError, match="takes every patient"):
        splitting.split_off(["p"] * 10, 3, 0, "data.val_cls", hold_out=True)


def test_the_split_is_by_whole_patients_and_close_to_the_count():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(60)], rng.integers(1, 4, 60))
    for count in (5, 17, 40):
        held, rest = splitting.split_off(groups, count, 3, "data.val_cls", hold_out=True)
        assert not set(groups[held]) & set(groups[rest])
        assert sorted(np.concatenate([held, rest]).tolist()) == list(range(len(groups)))
        assert abs(len(held) - count) <= 1  # groups of 1-3 films: within one film
    # One film per group: the film-by-film draw of before (permutation of range(n)).
    held, rest = splitting.split_off(np.arange(40), 8, 7, "x")
    order = np.random.default_rng(7).permutation(40)
    assert held.tolist() == sorted(order[:8].tolist()) and rest.tolist() == sorted(order[8:].tolist())


def test_balanced_oversample_draws_the_repeats_at_random_evenly():
    indices = np.arange(30)
    labels = np.array([0] * 4 + [1] * 26)  # 4 normals topped up to 26: 6 or 7 times each
    out = sources.balanced_oversample(indices, labels, seed=0)
    counts = np.bincount(out[out < 4], minlength=4)
    assert counts.sum() == 26 and set(counts.tolist()) <= {6, 7}
    assert np.all(np.bincount(out[out >= 4])[4:] == 1)
    draws = {tuple(np.bincount(sources.balanced_oversample(indices, labels, s)[:26],
                               minlength=4)[:4]) for s in range(8)}
    assert len(draws) > 1  # which normals repeat once more is drawn, not the first ones
    assert sources.balanced_oversample(indices, labels, 3).tolist() == \
        sources.balanced_oversample(indices, labels, 3).tolist()


def test_summary_counts_a_balanced_label_budget_as_the_films_it_labels():
    """The log reads 'cls_labeled: 8 films' for labels.cls=8, with the oversampled stream's
    length beside it, never the stream's length as if more films were labelled."""
    config = pipeline_config(**{"data.balance_labeled": True, "data.synthetic_pneumonia_fraction": 0.8})
    splits = sources.make_splits(config)
    labeled = splits.summary()["cls_labeled"]
    assert labeled["films"] == 8 and labeled["stream"] == len(splits.cls_labeled) > 8
    assert "stream" not in splits.summary()["cls_unlabeled"]


def test_named_validation_split_of_synthetic_data_is_an_error():
    config = pipeline_config(**{"data.val_cls": "split:validation"})
    with pytest.raises(ValueError, match="no named splits"):
        sources.make_splits(config)


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
    load = lambda split: sources.load_source(spec, "classification", S, split=split)
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
    splits = sources.make_splits(config)
    films = {name: v["films"] for name, v in splits.summary().items() if name != "grouping"}
    assert films["cls_val"] == counts["val"]
    assert films["cls_labeled"] + films["cls_unlabeled"] == counts["train"]



def test_a_held_out_split_loses_its_copies_of_training_images(tmp_path):
    """Duplicates are found across the folder's splits; the training split keeps its image."""
    import shutil
    counts = _write_split_folder(tmp_path / "xray", np.random.default_rng(2))
    root = tmp_path / "xray"
    train_file = sorted((root / "train" / "NORMAL").glob("*.png"))[0]
    shutil.copy(train_file, root / "val" / "NORMAL" / "copy_of_train.png")
    shutil.copy(train_file, root / "test" / "NORMAL" / "copy_of_train.png")
    spec = {"kind": "folder", "path": str(root)}
    load = lambda split: sources.load_source(spec, "classification", S, split=split)
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
    splits = sources.DataSplits(cls_labeled=labelled_source(n))
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
    splits = sources.DataSplits(cls_labeled=source, seg_labeled=sources.ArraySource(
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
    splits = sources.DataSplits(cls_labeled=small)
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(32, 32\)"):
        next(iterator(config, splits, ["cls_labeled"]))
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(32, 32\)"):
        next(input_pipeline.eval_batches(small, 4, S))


def test_wrong_mask_size_is_a_clear_error(config):
    bad = sources.ArraySource({"image": np.zeros((4, S, S), np.uint8),
                                      "mask": np.zeros((4, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match=r"mask of shape \(8, 8\)"):
        next(iterator(config, sources.DataSplits(seg_labeled=bad), ["seg_labeled"]))


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
    splits = sources.make_splits(config)
    summary = splits.summary()
    assert summary["cls_val"]["films"] == counts["val"]
    assert summary["cls_labeled"]["films"] + summary["cls_unlabeled"]["films"] == counts["train"]
    train_images = set(image_bytes(splits.cls_labeled)) | set(image_bytes(splits.cls_unlabeled))
    assert not train_images & set(image_bytes(splits.cls_val))


# --------------------------------------------------------------------------- patients
def _write_patient_folder(root, rng, extra_films=()):
    """A Kermany-named class folder: 12 pneumonia patients with 1-3 films, 8 normal ones."""
    from PIL import Image
    names = []
    for p in range(12):
        for f in range(1 + p % 3):
            names.append(f"PNEUMONIA/person{p}_{('bacteria', 'virus')[f % 2]}_{p * 10 + f}.jpeg")
    for p in range(8):
        names += [f"NORMAL/IM-{p:04d}-0001.jpeg", f"NORMAL/NORMAL2-IM-{p:04d}-0001.jpeg"][: 1 + p % 2]
    for name in [*names, *extra_films]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (S, S), dtype=np.uint8)).save(path, quality=95)
    return names


def _patient(key):
    from multimix_jax.datasets import layouts
    return layouts.kermany_patient(key)


def _folder_config(root, **overrides):
    config = pipeline_config(**{"tasks.segmentation": False, "data.val_cls": 8, "labels.cls": 6,
                                **overrides})
    config.data.cls.kind, config.data.cls.path = "folder", str(root)
    return config


def test_validation_and_label_budget_never_share_a_patient_with_training(tmp_path):
    _write_patient_folder(tmp_path / "xray", np.random.default_rng(0))
    for seed in range(4):
        splits = sources.make_splits(_folder_config(tmp_path / "xray",
                                                           **{"data.split_seed": seed}))
        patients = {name: {_patient(k) for k in sources.source_keys(getattr(splits, name))}
                    for name in ("cls_val", "cls_labeled", "cls_unlabeled")}
        assert None not in set().union(*patients.values())
        assert not patients["cls_val"] & (patients["cls_labeled"] | patients["cls_unlabeled"])
        assert not patients["cls_labeled"] & patients["cls_unlabeled"]
        summary = splits.summary()
        assert abs(summary["cls_val"]["films"] - 8) <= 1
        assert summary["cls_val"]["groups"] == len(patients["cls_val"]) < summary["cls_val"]["films"]
        assert summary["grouping"] == {"cls": "auto"}
    # 'film': the old film-by-film draw, in which patients do straddle the split.
    splits = sources.make_splits(_folder_config(tmp_path / "xray", **{"data.cls.group": "film"}))
    assert splits.summary()["cls_val"]["films"] == 8


def test_patient_rules():
    from multimix_jax.datasets import layouts
    keys = ["PNEUMONIA/person1000_bacteria_2931.jpeg", "PNEUMONIA/person1000_virus_1681.jpeg",
            "PNEUMONIA/person447_virus_921_1.jpeg", "NORMAL/IM-0429-0001-0002.jpeg",
            "NORMAL/NORMAL2-IM-0429-0001.jpeg", "other/scan_7.png"]
    assert layouts.patient_groups(keys, "auto") == [
        "person1000", "person1000", "person447", "normal-429", "normal-429", "film:other/scan_7.png"]
    assert layouts.patient_groups(keys, "film") == keys
    assert layouts.patient_groups(["a/p1_x.png", "a/p1_y.png", "b.png"], r"regex:p(\d+)_") == [
        "1", "1", "film:b.png"]
    with pytest.raises(UserError, match="data.cls.group='bogus' is not a grouping rule"):
        layouts.patient_groups(keys, "bogus", "data.cls.group")


@pytest.mark.slow
def test_kermany_validation_patients_are_not_in_training():
    from tests.conftest import SHARED_DATA
    root = SHARED_DATA / "kermany_pneumonia_224" / "train"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    config = pipeline_config(**{"tasks.segmentation": False, "data.val_cls": 500,
                                "labels.cls": 100, "data.image_size": 16})
    config.data.cls.kind, config.data.cls.path = "folder", str(root)
    splits = sources.make_splits(config)
    val = {_patient(k) for k in splits.cls_val.keys}
    train = {_patient(k) for k in np.concatenate([splits.cls_labeled.keys,
                                                  splits.cls_unlabeled.keys])}
    assert None not in val | train and not val & train
    assert any(p.startswith("person") for p in val) and any(p.startswith("normal") for p in val)
    assert abs(len(splits.cls_val) - 500) <= 2


# --------------------------------------------------------------------------- split records
def test_a_resume_whose_splits_moved_is_refused_naming_the_split(tmp_path):
    from multimix_jax import workdir as workdir_lib
    from multimix_jax.errors import ConfigMismatchError
    rng = np.random.default_rng(0)
    _write_patient_folder(tmp_path / "xray", rng)
    config = _folder_config(tmp_path / "xray")
    prints = sources.make_splits(config).fingerprints()
    workdir_lib.check_splits(tmp_path, prints, compare=False, write=True)
    record = json.loads((tmp_path / workdir_lib.SPLITS_FILE).read_text())
    assert set(record) == {"cls_val", "cls_labeled", "cls_unlabeled"}
    workdir_lib.check_splits(tmp_path, sources.make_splits(config).fingerprints(),
                             compare=True, write=True)  # same data: accepted
    # A film added: the patients are drawn again and films move.
    _write_patient_folder(tmp_path / "xray", rng, ["PNEUMONIA/person99_virus_1.jpeg"])
    with pytest.raises(ConfigMismatchError, match=r"records other films in its splits: "
                       r"cls_labeled \(\d+ of its \d+ films left it, \d+ joined it\)"):
        workdir_lib.check_splits(tmp_path, sources.make_splits(config).fingerprints(),
                                 compare=True, write=True)
    # Another copy of the folder, same file names, other pixels.
    _write_patient_folder(tmp_path / "copy", np.random.default_rng(5))
    config.data.cls.path = str(tmp_path / "copy")
    with pytest.raises(ConfigMismatchError, match=r"cls_val \(\d+ of its \d+ films left it"):
        workdir_lib.check_splits(tmp_path, sources.make_splits(config).fingerprints(),
                                 compare=True, write=False)
    workdir_lib.check_splits(tmp_path, sources.make_splits(config).fingerprints(),
                             compare=True, write=True, allow=["splits"])
    assert json.loads((tmp_path / workdir_lib.SPLITS_FILE).read_text()) != record


# --------------------------------------------------------------------------- extra pools
def _write_extra_pool(root, value: int, n: int = 5):
    """Constant films (``value``, ``value - 1``, ...) in nested folders and a text file."""
    from PIL import Image
    for i in range(n):
        path = root / f"site{i % 2}" / "deep" / f"film{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((S + 8, S), value - i, np.uint8)).save(path)  # distinct films
    (root / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("share, rows", [(0.5, 2), (0.25, 1), (1.0, 4)])
def test_the_extra_pool_fills_its_share_of_each_unlabelled_batch(tmp_path, share, rows):
    _write_extra_pool(tmp_path / "extra", 255)
    config = pipeline_config(per_stream=4, **{"data.cls.unlabeled_extra": str(tmp_path / "extra"),
                                              "data.seg.unlabeled_extra": str(tmp_path / "extra"),
                                              "data.cls.unlabeled_extra_share": share,
                                              "data.seg.unlabeled_extra_share": share})
    splits = sources.make_splits(config)
    assert splits.summary()["cls_unlabeled_extra"] == {"films": 5, "groups": 5}
    assert "cls_unlabeled_extra" in splits.fingerprints()
    assert all(name not in evaluation_names(splits) for name in ("cls_unlabeled_extra",))
    for batch in take(iterator(config, splits), 6):
        from_extra = lambda images: int(sum(np.all(im == im.flat[0]) and im.flat[0] > 245
                                            for im in images))
        assert from_extra(batch["cls_unlabeled"]["weak"]) == rows
        assert from_extra(batch["seg_unlabeled"]["image"]) == rows
        assert from_extra(batch["cls_labeled"]["image"]) == 0


def evaluation_names(splits):
    from multimix_jax import validation
    return set(validation.validation_sets(splits))


def test_without_an_extra_pool_the_batches_are_unchanged(tmp_path, config, splits):
    _write_extra_pool(tmp_path / "extra", 255)
    with_zero_share = pipeline_config(**{"data.cls.unlabeled_extra": str(tmp_path / "extra"),
                                         "data.cls.unlabeled_extra_share": 0.0})
    plain = take(iterator(config, splits), 3)
    assert_batches_equal(plain, take(iterator(with_zero_share,
                                              sources.make_splits(with_zero_share)), 3))
    with pytest.raises(UserError, match="data.cls.unlabeled_extra_share=1.5 must be between"):
        bad = pipeline_config(**{"data.cls.unlabeled_extra": str(tmp_path / "extra"),
                                 "data.cls.unlabeled_extra_share": 1.5})
        input_pipeline.train_dataset(bad, sources.make_splits(bad), ["cls_unlabeled"])


@pytest.mark.slow
def test_a_tiny_run_with_an_extra_pool_resumes_bit_identically(tmp_path):
    from multimix_jax import train
    from tests.conftest import tiny_train_config
    _write_extra_pool(tmp_path / "extra", 200)
    config = tiny_train_config(num_steps=4)
    config.data.cls.unlabeled_extra = config.data.seg.unlabeled_extra = str(tmp_path / "extra")
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    train.train_and_evaluate(config, tmp_path / "resumed", stop_at_step=2)
    resumed = train.train_and_evaluate(config, tmp_path / "resumed")
    for a, b in zip(jax.tree_util.tree_leaves(straight["state"].params),
                    jax.tree_util.tree_leaves(resumed["state"].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    record = json.loads((tmp_path / "resumed" / "splits.json").read_text())
    assert record["cls_unlabeled_extra"]["films"] == 5
    # A film added to the extra pool: a resume is refused, naming the split; an evaluation,
    # which does not read the pool, is not, with or without the pool named.
    from PIL import Image
    from multimix_jax import evaluate
    from multimix_jax.errors import ConfigMismatchError
    Image.fromarray(np.full((S, S), 9, np.uint8)).save(tmp_path / "extra" / "new.png")
    config.train.num_steps = 6
    moved = r"cls_unlabeled_extra \(0 of its 5 films left it, 1 joined it\)"
    with pytest.raises(ConfigMismatchError, match=moved):
        train.train_and_evaluate(config, tmp_path / "resumed")
    evaluate.evaluate(config, tmp_path / "resumed", output_dir=tmp_path / "with_pool")
    config.data.cls.unlabeled_extra = config.data.seg.unlabeled_extra = ""
    evaluate.evaluate(config, tmp_path / "resumed", output_dir=tmp_path / "without_pool")
