"""Evaluate a checkpoint on every evaluation set of the config and on any extra folder; write
results.json (with 95% bootstrap intervals and the trivial rules), results.md, the per-film
predictions.npz, report.html and example PNGs (docs/multimix.md, Metrics)."""

from __future__ import annotations

import functools
import io
import logging
import pathlib
from typing import Callable, Mapping, Sequence

import numpy as np

from multimix_jax import (config_check, drift, evaluation, files, intervals, metrics, names,
                          pictures, postprocess, prior, report, sources, steps, validation)
from multimix_jax import workdir as workdir_lib

log = logging.getLogger("multimix_jax")

PREDICTIONS_FILE, REPORT_FILE = "predictions.npz", "report.html"


def labeled_prior(splits: sources.DataSplits) -> dict | None:
    """The labelled training films' pneumonia fraction and count (each film once, also when
    ``data.balance_labeled`` repeats a class in the labelled stream); None without a
    labelled classification set."""
    labeled = splits.cls_labeled
    if labeled is None or len(labeled) == 0:
        return None
    _, first = np.unique(sources.source_keys(labeled), return_index=True)  # each film once
    labels = np.array([labeled[int(i)]["label"] for i in first])
    return {"pneumonia_fraction": float(np.mean(labels == names.PNEUMONIA)),
            "n": int(labels.size)}


def trivial_rules(labels: np.ndarray, labeled_fraction: float | None) -> dict:
    """metrics.trivial_rules on a set, each rule with its 95% intervals ("ci")."""
    rules = metrics.trivial_rules(labels, labeled_fraction)
    for rule, values in rules.items():
        films = {"label": labels, "prob_pneumonia": metrics.trivial_rule_probs(
            rule, len(labels), labeled_fraction)}
        values["ci"] = intervals.set_intervals(names.CLASSIFICATION, films,
                                               names.DEFAULT_THRESHOLD)
    return rules


def worst_section(predict_set: Callable, threshold: float, name: str, task: str, source,
                  result: dict, films: dict) -> report.SetSection:
    """The set's report section, with the saliency of its worst films only (one more
    prediction pass over those few films)."""
    worst = report.worst_films(task, films, threshold)
    shown = []
    if len(worst):
        subset = sources.SubsetSource(source, worst)
        again = predict_set(subset, saliency_count=len(worst))
        for k, index in enumerate(worst):
            strip = pictures.example_strip(subset[k]["image"], again["saliency"][k],
                                           again["mask_prob"][k], again.get("mask", [None] * len(worst))[k])
            shown.append(report.Film(int(index), report.caption(task, films, int(index)), strip))
    return report.SetSection(name, task, result, films, threshold, shown)


def evaluate_one(predict_set: Callable, threshold: float, name: str, task: str, source,
                 output_dir: pathlib.Path, *, num_example_pngs: int = 0, mask_mode: str = "none",
                 labeled_fraction: float | None = None, base_prior: float | None = None,
                 threshold_rule: str = "fixed", reference_crossing: float | None = None,
                 keep: dict | None = None) -> tuple[dict, dict, report.SetSection]:
    """One set, predicted once by ``predict_set`` (``evaluation.run_predictions`` with the
    checkpoint bound; its worst films once more, for their saliency): its metrics
    (classification of the calibrated P(pneumonia) at the checkpoint's ``threshold``, moved by
    the set's score drift from ``reference_crossing`` when it is given (``drift.py``), and
    adjusted to the set's estimated prior, EM from ``base_prior``, when it is given, at the
    threshold ``prior.adapted_threshold`` makes of it by ``threshold_rule``; masks post-processed
    by ``mask_mode``, the checked ``eval.mask_postprocess``) with 95% bootstrap intervals ("ci")
    and, for classification, the trivial rules ("trivial_rules", the training prior rule at
    ``labeled_fraction``); its per-film arrays; its report section; and, for a segmentation
    set, ``num_example_pngs`` example PNGs."""
    count = num_example_pngs if task == names.SEGMENTATION else 0
    predictions = predict_set(source, saliency_count=count)
    if keep is not None and task == names.CLASSIFICATION:
        keep[name] = {key: predictions[key] for key in ("label", "prob_pneumonia_uncalibrated")}
    estimated, moved = None, None
    if task == names.SEGMENTATION:
        predictions = postprocess.apply_to_predictions(predictions, mask_mode)
    else:
        if reference_crossing is not None:  # a moved threshold is fitted to the set: kept
            moved = drift.moved_threshold(threshold, reference_crossing,
                                          predictions["prob_pneumonia"])
            threshold, threshold_rule = moved.threshold, "fitted"
        if base_prior is not None:
            predictions, estimated = prior.adapt_predictions(predictions, base_prior)
            threshold = prior.adapted_threshold(threshold, threshold_rule, base_prior, estimated)
    films = intervals.per_film(task, predictions, sources.source_keys(source),
                               sources.source_groups(source))
    result = evaluation.set_metrics(task, predictions, threshold,
                                    per_image=films if task == names.SEGMENTATION else None)
    if moved is not None:
        result["score_drift"], result["drift_threshold"] = moved.score_drift, moved.threshold
    if estimated is not None:
        result["estimated_prior"], result["adapted_threshold"] = estimated, threshold
    log.info("%s (%s, n=%d): %s", name, task, len(source),
             {k: round(float(v), 4) for k, v in result.items() if v is not None})
    result["ci"] = intervals.set_intervals(task, films, threshold)
    if task == names.CLASSIFICATION:
        result["trivial_rules"] = trivial_rules(films["label"], labeled_fraction)
    if count > 0:
        pictures.write_example_pngs(output_dir / "examples", source, predictions, count, name)
    section = worst_section(predict_set, threshold, name, task, source, result, films)
    return result, films, section


def write_predictions(path: pathlib.Path, films: Mapping[str, dict]) -> pathlib.Path:
    """predictions.npz: every set's per-film arrays as "SET/ARRAY" (label, prob_pneumonia, ...,
    or dice, hd95, ...), for paired comparisons (scripts/compare.py); written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"{name}/{key}": value for name, arrays in films.items()
                                   for key, value in arrays.items()})
    return files.write_atomically(path, buffer.getvalue())


def evaluate(config, workdir: str | pathlib.Path, *, which: str = "best",
             extra_sets: Mapping[str, tuple] | None = None,
             output_dir: str | pathlib.Path | None = None, adapt_prior: bool = False,
             adapt_threshold: bool = False, allow_config_change: Sequence[str] = ()) -> dict:
    """Every evaluation set of the config (validation hold-outs, test sets) plus ``extra_sets``
    (name -> (task, source), ``sources.extra_sources``), at the decision (temperature,
    threshold) stored with the checkpoint; writes results.json, results.md, predictions.npz,
    report.html and example PNGs to ``output_dir`` (default: ``workdir``). ``adapt_prior``:
    each classification set's posteriors adjusted to its own estimated class prior
    (``sets.NAME.estimated_prior``; docs/multimix.md, A new site). ``adapt_threshold``: each
    classification set's threshold moved by its own score drift (``sets.NAME.score_drift``,
    ``drift_threshold``). ``allow_config_change``:
    recorded config fields that may differ ('splits': the splits may differ from the workdir's
    ``splits.json``)."""
    config_check.check_config_values(config)
    workdir = pathlib.Path(workdir).resolve()
    output_dir = pathlib.Path(output_dir).resolve() if output_dir else workdir
    mask_mode = postprocess.check_mode(config.eval.mask_postprocess)
    loaded = evaluation.load_for_inference(config, workdir, which, allow_config_change)
    if adapt_prior:
        prior.recorded_base(loaded.info)  # an unvalidated checkpoint stops before any data
    if adapt_threshold:
        drift.recorded_reference(loaded.info)  # the same
    predict_fn = steps.jit_predict(loaded.model, loaded.mesh, config.eval.flip_tta)
    splits = sources.make_splits(config)
    workdir_lib.check_splits(workdir, splits.fingerprints(), compare=True, write=False,
                             allow=allow_config_change, inference=True)
    labeled = labeled_prior(splits)
    val_sets = validation.validation_sets(splits, config.eval.shifted_validation)
    sets = sources.eval_sources(config, val_sets, extra_sets)
    predict_set = evaluation.predictor(predict_fn, loaded.params, config.data, loaded.mesh,
                                       loaded.temperature)  # calibrated by its temperature
    measured = functools.cache(  # an older checkpoint's references: validation predicted once
        lambda: validation.site_references_of_sets(predict_set, val_sets))
    base = prior.base_prior(loaded.info, from_validation=lambda: measured()["encoded_prior"]
                            ) if adapt_prior else None
    reference = drift.reference_crossing(loaded.info, from_validation=lambda: (
        measured()["score_crossing"])) if adapt_threshold else None
    staging = files.staging_folder(output_dir, "evaluate")  # moved in once complete
    results, films, sections, kept = {}, {}, [], {}
    for name, (task, source) in sets.items():
        results[name], films[name], section = evaluate_one(
            predict_set, loaded.threshold, name, task, source, staging,
            num_example_pngs=config.eval.num_example_pngs, mask_mode=mask_mode,
            labeled_fraction=labeled and labeled["pneumonia_fraction"], base_prior=base,
            threshold_rule=config.eval.threshold, reference_crossing=reference, keep=kept)
        sections.append(section)
    if not (adapt_prior or adapt_threshold):  # a set the decision was fitted on: out of sample
        for name, figures in validation.held_out_of_sets(config.eval, val_sets, kept).items():
            films[name][intervals.DECIDED] = figures.pop(intervals.DECIDED)  # compare.py too
            results[name].update(figures)
            results[name]["ci"] = intervals.set_intervals(names.CLASSIFICATION, films[name],
                                                          loaded.threshold)
    budgets = evaluation.label_budgets(config)
    run = {"model": config.eval.model_name, "budgets": budgets,
           "checkpoint": str(which), "step": loaded.step, "workdir": str(workdir)}
    evaluation.write_results(
        staging, results, config.eval.table, config.eval.model_name, budgets,
        threshold=loaded.threshold, temperature=loaded.temperature,
        extra={"checkpoint": str(which), "step": loaded.step, "workdir": str(workdir),
               "labeled_prior": labeled, "predictions": PREDICTIONS_FILE,
               "adapt_prior": {"encoded_prior": base} if adapt_prior else None,
               "adapt_threshold": ({"reference_crossing": reference} if adapt_threshold
                                   else None),
               "mask_postprocess": mask_mode},
        notes=(prior.table_note(base) if adapt_prior else "",
               drift.table_note(reference) if adapt_threshold else "",
               postprocess.table_note(mask_mode)))
    write_predictions(staging / PREDICTIONS_FILE, films)
    report.write_report(staging / REPORT_FILE, sections, {
        **run, "threshold": loaded.threshold, "temperature": loaded.temperature,
        "labelled pneumonia fraction": labeled and labeled["pneumonia_fraction"]}, config)
    tables = ["results.json", "results.md"]
    files.move_outputs_in(staging, output_dir, owned=tables + [PREDICTIONS_FILE, REPORT_FILE,
                                                               "examples"], last=tables)
    json_path, md_path = (output_dir / name for name in tables)
    log.info("wrote %s, %s, %s and %s", json_path, md_path, PREDICTIONS_FILE, REPORT_FILE)
    print(md_path.read_text())
    return results
