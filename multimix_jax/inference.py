"""Evaluate a trained checkpoint on every configured set and on any folder; predict on image
files (class probabilities, mask, saliency and overlay PNGs)."""

from __future__ import annotations

import csv
import json
import logging
import pathlib
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image

from multimix_jax import checkpointing, evaluation, input_pipeline, metrics, steps, summaries
from multimix_jax.datasets import image_io

log = logging.getLogger("multimix_jax")


def load_for_inference(config, workdir: str | pathlib.Path, which: str = "best"):
    """(model, params, mesh, step): EMA params when the run used EMA, else the raw params."""
    mesh = steps.make_mesh()
    model, tx, state = steps.setup(config, mesh, steps_per_epoch=1)
    state, step = checkpointing.restore_state_for_inference(
        workdir, checkpointing.abstract_like(state), which)
    return model, steps.inference_params(state, config), mesh, step


# --------------------------------------------------------------------------- pictures
def overlay_rgb(image: np.ndarray, mask_prob: np.ndarray, true_mask: np.ndarray | None = None) -> np.ndarray:
    """Gray image with the predicted mask (>= 0.5) tinted green; true-mask edge in red."""
    gray = np.asarray(image, np.float32) / 255.0
    rgb = np.stack([gray] * 3, -1)
    pred = mask_prob >= 0.5
    rgb[pred] = 0.6 * rgb[pred] + 0.4 * np.array([0.1, 0.9, 0.2])
    if true_mask is not None:
        t = true_mask > 0
        edge = t & ~(np.roll(t, 1, 0) & np.roll(t, -1, 0) & np.roll(t, 1, 1) & np.roll(t, -1, 1))
        rgb[edge] = [1.0, 0.1, 0.1]
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def saliency_rgb(saliency: np.ndarray) -> np.ndarray:
    return (colormaps["inferno"](summaries.normalize_map(saliency))[..., :3] * 255).astype(np.uint8)


def save_png(path: pathlib.Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def write_example_pngs(out_dir: pathlib.Path, source, predictions: dict, count: int,
                       prefix: str) -> list[pathlib.Path]:
    """For the first ``count`` examples: one PNG strip input | saliency | overlay."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(count, len(source))):
        image = np.asarray(source[i]["image"]).squeeze()
        true = predictions["mask"][i] if "mask" in predictions else None
        strip = np.concatenate([np.stack([image] * 3, -1), saliency_rgb(predictions["saliency"][i]),
                                overlay_rgb(image, predictions["mask_prob"][i], true)], axis=1)
        scale = max(1, 192 // image.shape[0])  # small models: enlarge (nearest) for viewing
        strip = np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1)
        path = out_dir / f"{prefix}_{i:02d}.png"
        save_png(path, strip)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- evaluate
def evaluate(config, workdir: str | pathlib.Path, *, which: str = "best",
             extra_sets: Mapping[str, tuple[str, str]] | None = None,
             output_dir: str | pathlib.Path | None = None) -> dict:
    """Every evaluation set of the config (validation hold-outs, test sets) plus ``extra_sets``
    (name -> (task, folder)); writes results.json, results.md and example PNGs."""
    workdir = pathlib.Path(workdir).resolve()
    output_dir = pathlib.Path(output_dir).resolve() if output_dir else workdir
    model, params, mesh, step = load_for_inference(config, workdir, which)
    predict_fn = steps.jit_predict(model, mesh)
    splits = input_pipeline.make_splits(config)
    sets = evaluation.eval_sources(config, splits, extra_sets)
    results, size, batch_size = {}, config.data.image_size, config.data.eval_batch_size
    for name, (task, source) in sets.items():
        results[name] = evaluation.evaluate_set(predict_fn, params, source, task, batch_size,
                                                size, mesh)
        if task == input_pipeline.SEGMENTATION:
            count = config.eval.num_example_pngs
            if count > 0:
                subset = input_pipeline.SubsetSource(source, range(min(count, len(source))))
                preds = evaluation.run_predictions(predict_fn, params, subset, batch_size, size,
                                                   mesh, keep_saliency=True)
                write_example_pngs(output_dir / "examples", subset, preds, count, name)
        log.info("%s (%s, n=%d): %s", name, task, len(source),
                 {k: round(float(v), 4) for k, v in results[name].items()})
    budgets = "/".join(str(n) if config.tasks.get(task) else "-"  # '-': task switched off
                       for n, task in ((config.labels.cls, input_pipeline.CLASSIFICATION),
                                       (config.labels.seg, input_pipeline.SEGMENTATION)))
    json_path, md_path = evaluation.write_results(
        output_dir, results, config.eval.table, config.eval.model_name, budgets,
        extra={"checkpoint": which, "step": int(step), "workdir": str(workdir)})
    log.info("wrote %s and %s", json_path, md_path)
    print(md_path.read_text())
    return results


# --------------------------------------------------------------------------- predict
def collect_image_paths(inputs: Sequence[str]) -> list[pathlib.Path]:
    paths = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.is_file() and image_io.is_image_file(f)
                            and not image_io.is_ignorable(f))
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not paths:
        raise FileNotFoundError(f"no image files in {list(inputs)}")
    return paths


def predict_files(config, workdir: str | pathlib.Path, inputs: Sequence[str],
                  output_dir: str | pathlib.Path, which: str = "best") -> list[dict]:
    """Per image: class probabilities (predictions.json / .csv), mask, saliency and overlay PNGs
    at the model's resolution, named after the input file."""
    model, params, mesh, _ = load_for_inference(config, workdir, which)
    predict_fn = steps.jit_predict(model, mesh)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    size, batch_size = config.data.image_size, config.data.eval_batch_size
    paths = collect_image_paths(inputs)
    images = np.stack([image_io.resize_image(image_io.load_grayscale(p), size) for p in paths])
    source = input_pipeline.ArraySource({"image": images})
    out = evaluation.run_predictions(predict_fn, params, source, batch_size, size, mesh,
                                     keep_saliency=True)
    rows, used = [], set()
    for i, path in enumerate(paths):
        stem = path.stem if path.stem not in used else f"{path.stem}_{i}"
        used.add(stem)
        p = float(out["prob_pneumonia"][i])
        save_png(output_dir / f"{stem}_mask.png", ((out["mask_prob"][i] >= 0.5) * 255).astype(np.uint8))
        save_png(output_dir / f"{stem}_saliency.png", saliency_rgb(out["saliency"][i]))
        save_png(output_dir / f"{stem}_overlay.png", overlay_rgb(images[i], out["mask_prob"][i]))
        rows.append({"file": str(path), "prob_normal": 1.0 - p, "prob_pneumonia": p,
                     "predicted": metrics.CLASS_NAMES[int(p >= 0.5)], "outputs": stem})
    (output_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    with open(output_dir / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote predictions for %d images to %s", len(rows), output_dir)
    return rows
