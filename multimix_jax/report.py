"""report.html: one self-contained page (figures embedded as base64 PNG, no external assets)
that shows an evaluation (docs/multimix.md, Metrics): the run (config, checkpoint step,
threshold, temperature), then per set its metrics with 95% intervals and trivial rules, the
ROC curve with the operating point, the reliability diagram, the confusion matrix, the Dice
and HD95 distributions and the worst films as input | saliency | predicted vs true mask.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from multimix_jax import calibration, metrics, names
from multimix_jax.evaluation import format_interval, format_value
from multimix_jax.files import write_atomically

WORST_FILMS = 4  # films shown per set

# (title, key) of the metrics shown per set, in order; a key absent from a set is skipped
CLS_ROWS = (("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"),
            ("F1 normal", "f1_normal"), ("F1 pneumonia", "f1_pneumonia"),
            ("sensitivity", "recall_pneumonia"), ("ROC-AUC", "roc_auc"), ("ECE", "ece"),
            ("Brier", "brier"), ("ECE before calibration", "ece_uncalibrated"),
            ("Brier before calibration", "brier_uncalibrated"))
SEG_ROWS = (("Dice", "dice"), ("Jaccard", "jaccard"), ("HD", "hd"), ("HD95", "hd95"),
            ("SSIM", "ssim"))


@dataclasses.dataclass
class Film:
    """One of a set's worst films: its strip (RGB, input | saliency | masks) and a caption."""
    index: int
    caption: str
    strip: np.ndarray


@dataclasses.dataclass
class SetSection:
    """What the report shows of one set: its results (with "ci" and "trivial_rules"), its
    per-film arrays (multimix_jax/intervals.py names), the threshold and its worst films."""
    name: str
    task: str
    result: Mapping[str, Any]
    films: Mapping[str, np.ndarray]
    threshold: float
    worst: Sequence[Film] = ()


# --------------------------------------------------------------------------- worst films
def worst_films(task: str, films: Mapping[str, np.ndarray], threshold: float,
                count: int = WORST_FILMS) -> np.ndarray:
    """Indices of the films to look at: classification, the most confident errors (wrong at
    ``threshold``, farthest from it first); segmentation, the lowest Dice first."""
    if task == names.CLASSIFICATION:
        prob, label = films["prob_pneumonia"], films["label"]
        wrong = np.flatnonzero((prob >= threshold) != (label == names.PNEUMONIA))
        return wrong[np.argsort(-np.abs(prob[wrong] - threshold), kind="stable")][:count]
    return np.argsort(films["dice"], kind="stable")[:count]


def caption(task: str, films: Mapping[str, np.ndarray], index: int) -> str:
    """The film's name in its set (its position where it has none) and what it got wrong."""
    name = films["key"][index] if "key" in films else f"film {index}"
    if task == names.CLASSIFICATION:
        return (f"{name}: {names.CLASS_NAMES[int(films['label'][index])]}, "
                f"P(pneumonia) = {films['prob_pneumonia'][index]:.3f}")
    return f"{name}: Dice {films['dice'][index]:.3f}, HD95 {films['hd95'][index]:.1f} px"


# --------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(fig) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    _pyplot().close(fig)
    return _data_uri(buffer.getvalue())


def array_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format="PNG")
    return _data_uri(buffer.getvalue())


def roc_figure(labels: np.ndarray, prob: np.ndarray, threshold: float):
    """ROC curve of P(pneumonia) with the operating point at ``threshold``."""
    from sklearn.metrics import roc_curve
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    fpr, tpr, _ = roc_curve(labels, prob)
    pred, y = prob >= threshold, labels == names.PNEUMONIA
    ax.plot(fpr, tpr, color="C0", label="model")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8, label="chance")
    ax.plot([np.mean(pred[~y])], [np.mean(pred[y])], "o", color="C3",
            label=f"P >= {threshold:.3f}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02),
           title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def reliability_figure(labels: np.ndarray, curves: Mapping[str, np.ndarray]):
    """Reliability diagram (15 equal-width bins): observed pneumonia fraction against mean
    P(pneumonia) per bin, one line per probability (e.g. before / after calibration)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8)
    for k, (label, prob) in enumerate(curves.items()):
        b = metrics.calibration_bin(prob)
        count = np.bincount(b, minlength=metrics.ECE_BINS)
        used = count > 0
        mean_p = np.bincount(b, prob, metrics.ECE_BINS)[used] / count[used]
        frac = np.bincount(b, labels.astype(float), metrics.ECE_BINS)[used] / count[used]
        ece = metrics.calibration_metrics(labels, prob)["ece"]
        ax.plot(mean_p, frac, "o-", color=f"C{k}", ms=4, label=f"{label} (ECE {ece:.3f})")
    ax.set(xlabel="mean P(pneumonia)", ylabel="fraction pneumonia", xlim=(0, 1), ylim=(0, 1),
           title="reliability")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def confusion_figure(labels: np.ndarray, prob: np.ndarray, threshold: float):
    plt = _pyplot()
    pred = (prob >= threshold).astype(int)
    counts = np.array([[np.sum((labels == t) & (pred == p)) for p in (0, 1)] for t in (0, 1)])
    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    ax.imshow(counts, cmap="Blues")
    for (t, p), value in np.ndenumerate(counts):
        ax.text(p, t, str(value), ha="center", va="center",
                color="white" if value > counts.max() / 2 else "black")
    ax.set_xticks([0, 1], names.CLASS_NAMES)
    ax.set_yticks([0, 1], names.CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion at {threshold:.3f}")
    return fig


def distribution_figure(films: Mapping[str, np.ndarray]):
    """Histograms of the per-film Dice and HD95."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8))
    for ax, key, unit in zip(axes, ("dice", "hd95"), ("", " (px)")):
        ax.hist(films[key], bins=20, color="C0")
        ax.axvline(float(np.mean(films[key])), color="C3", lw=1, label="mean")
        ax.set(xlabel=key.replace("dice", "Dice").replace("hd95", "HD95") + unit, ylabel="films")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- html
CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .6em;
text-align:right}th:first-child,td:first-child{text-align:left}
figure{display:inline-block;margin:.3em;vertical-align:top}figcaption{font-size:.85em;color:#555}
.films figure{width:48%}.films img{width:100%;image-rendering:pixelated}
table.run td{text-align:left}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}"""


def _figure(cls: str, uri: str, text: str) -> str:
    return (f'<figure class="{cls}"><img src="{uri}" alt="{html.escape(text)}">'
            f"<figcaption>{html.escape(text)}</figcaption></figure>")


def metrics_table(section: SetSection) -> str:
    """The set's metrics with their 95% interval; the trivial rules as further columns."""
    rows = CLS_ROWS if section.task == names.CLASSIFICATION else SEG_ROWS
    rules = section.result.get("trivial_rules", {})
    ci = section.result.get("ci", {})
    head = "<tr><th>metric</th><th>model</th><th>95% interval</th>" + "".join(
        f"<th>{html.escape(rule.replace('_', ' '))}</th>" for rule in rules) + "</tr>"
    cells = lambda title, key: [title, format_value(section.result[key]),
                                format_interval(ci.get(key))] + [
        format_value(r.get(key)) for r in rules.values()]
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(title, key)) + "</tr>"
                   for title, key in rows if key in section.result)
    return f'<table class="metrics">{head}{body}</table>'


def set_html(section: SetSection) -> str:
    films, parts = section.films, []
    n = section.result.get("n", len(next(iter(films.values()), [])))
    parts.append(f'<section class="set" id="set-{html.escape(section.name)}">'
                 f"<h2>{html.escape(section.name)} ({section.task}, n = {n})</h2>")
    parts.append(metrics_table(section))
    if section.task == names.CLASSIFICATION and n:
        labels, prob = np.asarray(films["label"]), np.asarray(films["prob_pneumonia"])
        raw = calibration.uncalibrated(films)
        curves = ({"model": prob} if raw is None else
                  {"before calibration": raw, "after calibration": prob})
        if len(set(labels.tolist())) == 2:
            parts.append(_figure("roc", figure_uri(roc_figure(labels, prob, section.threshold)),
                                 "ROC curve; the dot is the operating point"))
        parts.append(_figure("reliability", figure_uri(reliability_figure(labels, curves)),
                             "reliability diagram (15 bins)"))
        parts.append(_figure("confusion", figure_uri(confusion_figure(
            labels, prob, section.threshold)), "confusion matrix"))
        title = "most confident errors"
    elif n:
        parts.append(_figure("distribution", figure_uri(distribution_figure(films)),
                             "per-film Dice and HD95"))
        title = "lowest Dice"
    else:
        title = "worst films"
    parts.append(f'<div class="films"><h3>{title} (input | saliency | predicted mask in green, '
                 "true outline in red)</h3>")
    parts += [_figure("film", array_uri(film.strip), film.caption) for film in section.worst]
    if not section.worst:
        parts.append("<p>none</p>")
    parts.append("</div></section>")
    return "\n".join(parts)


def render(sections: Sequence[SetSection], run: Mapping[str, Any], config_json: str) -> str:
    """The page: ``run`` (model, budgets, checkpoint, step, threshold, temperature, ...) as a
    table, the config, then every set."""
    title = f"{run.get('model', 'model')} evaluation"
    shown = lambda v: "none" if v is None else format_value(v) if isinstance(v, float) else str(v)
    info = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(shown(v))}</td></tr>"
                   for k, v in run.items())
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<section id="run"><table class="run">{info}</table>',
        "<p>Intervals: 95% percentile bootstrap over patients (over films where a set names "
        "no patients). Trivial rules: P(pneumonia) = 1, 0 "
        "or the labelled training films' pneumonia fraction, classified at 0.5.</p>",
        f'<details id="config"><summary>config</summary><pre>{html.escape(config_json)}</pre>'
        "</details></section>",
        *[set_html(section) for section in sections],
        "</body></html>"])


def write_report(path: str | pathlib.Path, sections: Sequence[SetSection],
                 run: Mapping[str, Any], config) -> pathlib.Path:
    """Writes report.html (atomically); ``config``: the ConfigDict evaluated."""
    config_json = json.dumps(json.loads(config.to_json_best_effort()), indent=2)
    return write_atomically(path, render(sections, run, config_json))
