"""Predict on image files: P(pneumonia) and the class at the checkpoint's decision threshold
(predictions.json / .csv), and per image a mask, saliency and overlay PNG of its own
(docs/multimix.md, Metrics)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import pathlib
from typing import Sequence

import numpy as np

from multimix_jax import (drift, evaluation, files, names, pictures, postprocess, prior, sources,
                          steps)
from multimix_jax.datasets import image_io
from multimix_jax.errors import UserError

log = logging.getLogger("multimix_jax")

OUTPUT_KINDS = ("mask", "saliency", "overlay")
TABLES = ("predictions.json", "predictions.csv")
CSV_COLUMNS = ("file", "prob_normal", "prob_pneumonia", "prob_pneumonia_uncalibrated",
               "predicted", "threshold", "outputs")


@dataclasses.dataclass
class Inputs:
    """The images to predict on, each with its output name, and the files skipped."""
    images: list[pathlib.Path]
    names: list[str]  # the image's path relative to ``root``; outputs are NAME_KIND.png
    skipped: list[pathlib.Path]  # files that are not images (by extension)
    root: pathlib.Path


def _files_under(folder: pathlib.Path, exclude: pathlib.Path | None) -> list[pathlib.Path]:
    """Files under ``folder``, without hidden/system files (image_io.is_ignorable, also for
    any folder on the way) and without anything inside ``exclude`` (earlier outputs)."""
    found = []
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or any(image_io.is_ignorable(part)
                                  for part in f.relative_to(folder).parts):
            continue
        if exclude is not None and f.is_relative_to(exclude):
            continue
        found.append(f)
    return found


def collect_inputs(inputs: Sequence[str], exclude: str | pathlib.Path | None = None) -> Inputs:
    """Images of ``inputs`` (files, or folders searched recursively), each named by its path
    relative to ``root``: the deepest folder that holds every input (a folder given, or the
    folder of a file given). So a single folder's images keep their paths inside it, files
    given directly keep their names, and two files of the same name in different folders keep
    the folders that tell them apart: no two images share outputs. A file met twice counts
    once."""
    exclude = pathlib.Path(os.path.abspath(exclude)) if exclude is not None else None
    images, skipped, bases = [], [], []
    for item in inputs:
        path = pathlib.Path(os.path.abspath(item))
        if path.is_dir():
            bases.append(path)
            files = _files_under(path, exclude)
        elif path.is_file():
            bases.append(path.parent)
            files = [path]
        else:
            raise UserError(f"--inputs {item}: no such file or folder; give image files or "
                            "folders of images")
        for f in files:
            film = image_io.is_image_file(f) and not image_io.dicom_skip_reason(f)
            (images if film else skipped).append(f)  # lateral / multi-frame DICOMs: skipped
    images, skipped = list(dict.fromkeys(images)), list(dict.fromkeys(skipped))
    if not images:
        inside = exclude is not None and any(b in exclude.parents for b in bases)
        why = f" (outside --output {exclude}, which is inside them and skipped)" if inside else ""
        raise UserError(f"--inputs {' '.join(inputs)}: no image files there{why}; give PNG, "
                        "JPEG or other image files, or folders that hold them")
    root = pathlib.Path(os.path.commonpath(bases))
    return Inputs(images, [f.relative_to(root).as_posix() for f in images], skipped, root)


def earlier_outputs(output_dir: pathlib.Path) -> list[str]:
    """What an earlier predict wrote into ``output_dir`` (its tables and, by the names its
    predictions.json lists, its PNGs): replaced by the new outputs, never mixed with them."""
    try:
        rows = json.loads((output_dir / TABLES[0]).read_text())["predictions"]
        names = [row["outputs"] for row in rows]
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    return list(TABLES) + [p.relative_to(output_dir).as_posix() for name in names
                           for p in output_paths(output_dir, name).values()]


def output_paths(output_dir: pathlib.Path, name: str) -> dict[str, pathlib.Path]:
    """kind -> ``output_dir/NAME_KIND.png``; NAME keeps the image's extension, so ``x.png``
    and ``x.jpeg`` differ."""
    return {kind: output_dir / f"{name}_{kind}.png" for kind in OUTPUT_KINDS}


def _predict_chunk(predict_fn, loaded: evaluation.Loaded, paths: Sequence[pathlib.Path],
                   config) -> tuple[np.ndarray, dict]:
    size = config.data.image_size
    images = np.stack([image_io.resize_image(image_io.load_grayscale(p), size) for p in paths])
    predictions = evaluation.run_predictions(
        predict_fn, loaded.params, sources.ArraySource({"image": images}),
        config.data.eval_batch_size, size, loaded.mesh, saliency_count=len(paths),
        temperature=loaded.temperature)
    return images, postprocess.apply_to_predictions(predictions, config.eval.mask_postprocess)


def _write_pictures(output_dir: pathlib.Path, name: str, image: np.ndarray, mask_prob: np.ndarray,
                    saliency: np.ndarray) -> None:
    paths = output_paths(output_dir, name)
    pictures.save_png(paths["mask"], pictures.mask_gray(mask_prob))
    pictures.save_png(paths["saliency"], pictures.saliency_rgb(saliency))
    pictures.save_png(paths["overlay"], pictures.overlay_rgb(image, mask_prob))


def _row(path: pathlib.Path, name: str, prob_pneumonia: float, uncalibrated: float,
         threshold: float) -> dict:
    """One image: P(pneumonia) calibrated when the checkpoint holds a temperature (what the
    threshold refers to), the model's own softmax beside it, and the predicted class."""
    return {"file": str(path), "prob_normal": 1.0 - prob_pneumonia,
            "prob_pneumonia": prob_pneumonia, "prob_pneumonia_uncalibrated": uncalibrated,
            "predicted": names.CLASS_NAMES[int(prob_pneumonia >= threshold)],
            "threshold": threshold, "outputs": name}


def _write_tables(output_dir: pathlib.Path, rows: list[dict], found: Inputs,
                  loaded: evaluation.Loaded, which: str, extra: dict) -> None:
    """predictions.json (the rows, the threshold, the checkpoint, the skipped files and
    ``extra``) and predictions.csv (the rows), each written atomically."""
    payload = {"threshold": loaded.threshold, "temperature": loaded.temperature,
               "checkpoint": str(which), "step": loaded.step,
               "input_root": str(found.root), "skipped_non_images": len(found.skipped),
               "skipped_files": [str(p) for p in found.skipped], **extra, "predictions": rows}
    json_path, csv_path = (output_dir / name for name in TABLES)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    files.write_json_atomically(json_path, payload)
    files.write_atomically(csv_path, table.getvalue())


def predict_files(config, workdir: str | pathlib.Path, inputs: Sequence[str],
                  output_dir: str | pathlib.Path, which: str = "best",
                  adapt_prior: bool = False, adapt_threshold: bool = False,
                  allow_config_change: Sequence[str] = ()) -> list[dict]:
    """Per image of ``inputs`` (see :func:`collect_inputs` for the output names): the class
    probabilities and the class at the checkpoint's decision threshold, and mask, saliency and
    overlay PNGs at the model's resolution (masks post-processed by ``eval.mask_postprocess``).
    ``adapt_prior``: the probabilities are adjusted to the inputs' class prior, estimated from
    them all (predictions.json ``adapt_prior``; docs/multimix.md, A new site).
    ``adapt_threshold``: the threshold is moved by the inputs' score drift, measured on them all
    (predictions.json ``adapt_threshold``). Returns the rows of predictions.json."""
    output_dir = pathlib.Path(os.path.abspath(output_dir))  # as the inputs: links unresolved
    found = collect_inputs(inputs, exclude=output_dir)
    for item in inputs:
        if pathlib.Path(os.path.abspath(item)).is_dir() and output_dir.is_relative_to(
                os.path.abspath(item)):
            log.warning("--output %s is inside --inputs %s: its files (earlier predictions) "
                        "are not inputs", output_dir, item)
    if found.skipped:
        log.warning("skipped %d file(s) that are not images: %s%s", len(found.skipped),
                    ", ".join(str(p) for p in found.skipped[:5]),
                    " ..." if len(found.skipped) > 5 else "")
    mask_mode = postprocess.check_mode(config.eval.mask_postprocess)
    loaded = evaluation.load_for_inference(config, workdir, which, allow_config_change)
    base = prior.base_prior(loaded.info) if adapt_prior else None
    reference = drift.reference_crossing(loaded.info) if adapt_threshold else None
    predict_fn = steps.jit_predict(loaded.model, loaded.mesh, config.eval.flip_tta)
    staging = files.staging_folder(output_dir, "predict")  # moved in once complete
    probs, uncalibrated = [], []
    chunk = 8 * config.data.eval_batch_size  # bounds the images held in memory
    for start in range(0, len(found.images), chunk):
        paths, names = found.images[start:start + chunk], found.names[start:start + chunk]
        images, predictions = _predict_chunk(predict_fn, loaded, paths, config)
        for i, name in enumerate(names):
            _write_pictures(staging, name, images[i], predictions["mask_prob"][i],
                            predictions["saliency"][i])
        probs.append(predictions["prob_pneumonia"])
        uncalibrated.append(predictions["prob_pneumonia_uncalibrated"])
    predictions = {"prob_pneumonia": np.concatenate(probs)}
    extra = {"adapt_prior": None, "adapt_threshold": None, "mask_postprocess": mask_mode}
    threshold, rule = loaded.threshold, config.eval.threshold
    if adapt_threshold:  # the drift of all inputs together: the whole set is needed first
        moved = drift.moved_threshold(threshold, reference, predictions["prob_pneumonia"])
        threshold, rule = moved.threshold, "fitted"
        extra["adapt_threshold"] = {"reference_crossing": reference,
                                    "score_drift": moved.score_drift,
                                    "drift_threshold": moved.threshold}
    if adapt_prior:  # the prior of all inputs together, likewise
        predictions, estimated = prior.adapt_predictions(predictions, base)
        threshold = prior.adapted_threshold(threshold, rule, base, estimated)
        extra["adapt_prior"] = {"encoded_prior": base, "estimated_prior": estimated,
                                "adapted_threshold": threshold}
    rows = [_row(path, name, float(p), float(u), threshold) for path, name, p, u
            in zip(found.images, found.names, predictions["prob_pneumonia"],
                   np.concatenate(uncalibrated))]
    _write_tables(staging, rows, found, loaded, which, extra)
    files.move_outputs_in(staging, output_dir, owned=earlier_outputs(output_dir),
                          last=list(TABLES))
    log.info("wrote predictions for %d images to %s (threshold %.3f)", len(rows), output_dir,
             threshold)
    return rows
