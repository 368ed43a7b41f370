#!/usr/bin/env python3
"""A proxy "site B" made from a config's held-out VALIDATION films (never trained on): every
film under one fixed acquisition change (another scanner's curve, half the resolution, sensor
noise, a tighter collimation crop), split by patient into an unlabelled pool (labels dropped:
for ``data.cls.unlabeled_extra`` / ``data.seg.unlabeled_extra``) and an evaluation half, the
evaluation films resampled to each class prior asked for (docs/multimix.md, A new site).
With --seg_disease the site's segmentation films are its severely ill patients: each film is
painted by ``shifts.severe_disease_shift`` (the painter of ``val_seg_disease_hard``) before the
acquisition change, in the pool and in the evaluation half alike.

  python scripts/make_site_proxy.py --config configs/shared_real.py --out runs/site_b \
      [--priors 0.25,0.5,0.75] [--per_set 120] [--seg_disease]

writes OUT/pool/{cls,seg}/*.png (the pool, no labels), OUT/site_films/{NORMAL,PNEUMONIA}/*.png
(the same pool films under their labels, for ``configs/finetune_site.py``, which labels 20 of
them), OUT/eval/cls_prior_P/{NORMAL,PNEUMONIA}/*.png and OUT/eval/seg/{images,masks}/*.png,
ready for ``--eval_cls_folder`` / ``--eval_seg_folder``, and OUT/site.json (what was done, the
films in each part). The pool and the evaluation half share no patient. These films are
validation films of the config's split: a model selected on them is favoured.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from multimix_jax import files, sources, splitting
from multimix_jax.augment import rotate_zoom_shift, to_uint8
from multimix_jax.shifts import as_hw, scanner_curve, severe_disease_shift

FLAGS = flags.FLAGS
SEED = 0


def define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "configs/*.py: fixes the validation split.")
    flags.DEFINE_string("out", None, "Folder to write the site into (must not exist).")
    flags.DEFINE_list("priors", ["0.25", "0.5", "0.75"], "P(pneumonia) of each evaluation set.")
    flags.DEFINE_integer("per_set", 120, "Films in each evaluation set (at most).")
    flags.DEFINE_bool("seg_disease", False, "Paint severe disease on the segmentation films "
                      "(pool and evaluation) before the acquisition change.")
    flags.mark_flags_as_required(["config", "out"])


def site_b(image: np.ndarray, mask: np.ndarray | None, index: int):
    """The one acquisition change of site B, the same for every film (the noise seeded by the
    film): a sigmoid scanner curve, half the resolution, Gaussian noise (sd 6 grey levels) and
    a 92% centre crop scaled back up; the mask follows the crop."""
    image = scanner_curve(image, 7.0, 0.45)
    n = image.shape[0]
    small = np.asarray(Image.fromarray(image).resize((n // 2, n // 2), Image.BILINEAR))
    image = np.asarray(Image.fromarray(small).resize((n, n), Image.BILINEAR))
    noise = np.random.default_rng([SEED, index]).normal(0, 6, image.shape)
    image = to_uint8(image.astype(np.float32) + noise)
    return rotate_zoom_shift(image, mask, 0.0, 1 / 0.92, 1.0)


def _save(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _halves(groups, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool, evaluation) film indices: half of the patients each."""
    pool, rest = splitting.split_groups(groups, [len(groups) // 2], seed)
    return pool, rest


def main(argv) -> None:
    del argv
    config, out = FLAGS.config, pathlib.Path(FLAGS.out).expanduser()
    if out.exists():
        raise SystemExit(f"error: --out {out} exists; give a new folder")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():  # what a killed run left
        shutil.rmtree(staging)
    splits = sources.make_splits(config)
    record = {"config": str(config.data.cls.get("path", "")), "priors": {}, "seed": SEED,
              "change": " ".join(site_b.__doc__.split())}
    cls, seg = splits.cls_val, splits.seg_val
    if cls is not None:
        labels = np.asarray([cls[i]["label"] for i in range(len(cls))])
        pool, evaluation = _halves(splits.groups("cls_val"), SEED)
        for i in pool:
            image = site_b(as_hw(cls[int(i)]["image"]), None, int(i))[0]
            _save(staging / "pool" / "cls" / f"cls_{i:05d}.png", image)
            _save(staging / "site_films" / ("PNEUMONIA" if labels[i] else "NORMAL") /
                  f"cls_{i:05d}.png", image)
        rng = np.random.default_rng(SEED)
        by_class = [evaluation[labels[evaluation] == c] for c in (0, 1)]
        for prior in (float(p) for p in FLAGS.priors):
            n_pos = min(len(by_class[1]), int(round(FLAGS.per_set * prior)),
                        int(len(by_class[0]) * prior / max(1 - prior, 1e-9)))
            n_neg = min(len(by_class[0]), int(round(n_pos * (1 - prior) / prior)))
            chosen = {0: rng.choice(by_class[0], n_neg, replace=False),
                      1: rng.choice(by_class[1], n_pos, replace=False)}
            for label, indices in chosen.items():
                for i in indices:
                    _save(staging / "eval" / f"cls_prior_{prior:g}" /
                          ("PNEUMONIA" if label else "NORMAL") / f"cls_{i:05d}.png",
                          site_b(as_hw(cls[int(i)]["image"]), None, int(i))[0])
            record["priors"][f"{prior:g}"] = {"normal": int(n_neg), "pneumonia": int(n_pos),
                                              "prior": n_pos / max(n_pos + n_neg, 1)}
        record["cls"] = {"pool": len(pool), "evaluation": len(evaluation)}
    if seg is not None:
        pool, evaluation = _halves(splits.groups("seg_val"), SEED + 1)
        for part, indices in (("pool", pool), ("eval", evaluation)):
            for i in indices:
                image, mask = as_hw(seg[int(i)]["image"]), as_hw(seg[int(i)]["mask"])
                if FLAGS.seg_disease:
                    image, mask, _ = severe_disease_shift(
                        image, mask, np.random.default_rng([SEED, 20_000 + int(i)]))
                image, mask = site_b(image, mask, 10_000 + int(i))
                if part == "pool":
                    _save(staging / "pool" / "seg" / f"seg_{i:05d}.png", image)
                else:
                    _save(staging / "eval" / "seg" / "images" / f"seg_{i:05d}.png", image)
                    _save(staging / "eval" / "seg" / "masks" / f"seg_{i:05d}.png",
                          (mask > 0).astype(np.uint8) * 255)
        record["seg"] = {"pool": len(pool), "evaluation": len(evaluation),
                         "severe_disease": FLAGS.seg_disease}
    files.write_json_atomically(staging / "site.json", record)
    staging.rename(out)
    print(json.dumps(record))


if __name__ == "__main__":
    define_flags()
    app.run(main)
