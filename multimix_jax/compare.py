"""Paired comparison of two evaluations (two workdirs' results.json with their per-film
predictions.npz) on the sets they share: each metric's difference B - A with its 95% paired
bootstrap interval, and whether that interval excludes 0 (multimix_jax/intervals.py); and,
over several seeds' pairs, whether a difference outgrows the spread between seeds."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Mapping, Sequence

import numpy as np

from multimix_jax import intervals, names
from multimix_jax.grid import mean_std
from multimix_jax.errors import UserError

DEFAULT_PREDICTIONS = "predictions.npz"


def load_evaluation(results_path: str | pathlib.Path) -> tuple[dict, dict[str, dict]]:
    """(results.json's payload, set -> per-film arrays from the predictions.npz beside it)."""
    path = pathlib.Path(results_path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no such results file; give a results.json written by "
                        "--mode evaluate (or its folder)")
    payload = json.loads(path.read_text())
    films_path = path.parent / payload.get("predictions", DEFAULT_PREDICTIONS)
    if not films_path.is_file():
        raise UserError(f"{films_path}: missing, so {path} cannot be compared film by film; "
                        "re-run --mode evaluate to write it")
    films: dict[str, dict] = {}
    with np.load(films_path) as data:
        for key in data.files:
            name, array = key.rsplit("/", 1)
            films.setdefault(name, {})[array] = data[key]
    return payload, films


def _task(arrays: Mapping[str, np.ndarray]) -> str:
    return names.CLASSIFICATION if "label" in arrays else names.SEGMENTATION


def _aligned(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]
             ) -> tuple[dict | None, str | None]:
    """(``b``'s arrays in ``a``'s film order, matched by film key, None) or (None, why the two
    sets are not of the same films)."""
    if _task(a) != _task(b):
        return None, "different tasks"
    if intervals.KEY not in a or intervals.KEY not in b:
        return None, ("no film names in its predictions.npz (written before they were "
                      "recorded): run --mode evaluate again")
    keys_a, keys_b = (np.asarray(x[intervals.KEY], str) for x in (a, b))
    if len(set(keys_a)) != len(keys_a) or len(set(keys_b)) != len(keys_b):
        return None, "a film name repeats within the set, so films cannot be matched"
    if set(keys_a) != set(keys_b):
        return None, (f"not the same films ({len(set(keys_a) - set(keys_b))} only in A, "
                      f"{len(set(keys_b) - set(keys_a))} only in B)")
    position = {key: i for i, key in enumerate(keys_b)}
    order = np.asarray([position[key] for key in keys_a], np.int64)
    b = {name: np.asarray(values)[order] for name, values in b.items()}
    if "label" in a and not np.array_equal(a["label"], b["label"]):
        return None, "the same films have different labels in A and B"
    return b, None


def compare(results_a: str | pathlib.Path, results_b: str | pathlib.Path,
            resamples: int = intervals.RESAMPLES, seed: int = intervals.SEED) -> dict:
    """{"sets": set -> metric -> intervals.paired_difference entry, "skipped": set -> reason}
    over the sets both evaluations hold; each classification set at its own evaluation's
    threshold (``sets.NAME.threshold``)."""
    payload_a, films_a = load_evaluation(results_a)
    payload_b, films_b = load_evaluation(results_b)
    out: dict = {"a": str(results_a), "b": str(results_b), "sets": {}, "skipped": {}}
    for name in (n for n in films_a if n in films_b):
        a = films_a[name]
        b, reason = _aligned(a, films_b[name])
        if reason:
            out["skipped"][name] = reason
            continue
        threshold = lambda payload: float(payload["sets"].get(name, {}).get(
            "threshold", names.DEFAULT_THRESHOLD))
        out["sets"][name] = intervals.paired_difference(
            _task(a), a, b, threshold(payload_a), threshold(payload_b), resamples, seed)
    if not out["sets"]:
        raise UserError(f"{results_a} and {results_b} share no set of the same films "
                        f"(skipped: {out['skipped'] or 'none in common'})")
    return out


def compare_seeds(pairs: Sequence[tuple[str | pathlib.Path, str | pathlib.Path]],
                  resamples: int = intervals.RESAMPLES, seed: int = intervals.SEED) -> dict:
    """{"pairs": each (A, B) pair's :func:`compare`, "sets": set -> metric -> summary} over
    the sets every pair shares, for seed s's run without (A) and with (B) a change. The
    summary holds the mean of A, of B and of B - A over seeds, each seed's B - A and whether
    its interval excludes 0, the seed spread (the larger sd over seeds of A and of B) and
    ``holds``: every seed's B - A has the sign of the mean and the mean exceeds the spread,
    so a gain smaller than the spread between seeds is not called one."""
    if len(pairs) < 2:
        raise UserError(f"{len(pairs)} pair of evaluations given: a comparison over seeds "
                        "needs two or more (A B A B ...)")
    per_pair = [compare(a, b, resamples, seed) for a, b in pairs]
    shared = [name for name in per_pair[0]["sets"] if all(name in c["sets"] for c in per_pair)]
    out: dict = {"pairs": per_pair, "sets": {}}
    for name in shared:
        metrics = [m for m in per_pair[0]["sets"][name]
                   if all(m in c["sets"][name] for c in per_pair)]
        out["sets"][name] = {}
        for metric in metrics:
            rows = [c["sets"][name][metric] for c in per_pair]
            (mean_a, sd_a, n_a), (mean_b, sd_b, n_b), (mean_diff, _, n_diff) = (
                mean_std(row[k] for row in rows) for k in ("a", "b", "difference"))
            every_seed = min(n_a, n_b, n_diff) == len(rows)  # else no verdict
            spread = max(sd_a, sd_b) if every_seed else math.nan
            diffs = [row["difference"] for row in rows]
            out["sets"][name][metric] = {
                "a": mean_a, "b": mean_b, "difference": mean_diff, "per_seed": diffs,
                "per_seed_excludes_zero": [row["excludes_zero"] for row in rows],
                "seed_spread": spread,
                "holds": bool(every_seed and all(d * mean_diff > 0 for d in diffs)
                              and abs(mean_diff) > spread)}
    return out


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _table(intro: str, columns: Sequence[str], sets: Mapping, cells) -> list[str]:
    """``intro``, then one markdown row per set and metric: the set, the metric and
    ``cells(row)`` under ``columns``."""
    lines = [intro, "", "| set | metric | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    lines += [f"| {name} | {metric} | " + " | ".join(cells(row)) + " |"
              for name, rows in sets.items() for metric, row in rows.items()]
    return lines


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def markdown(comparison: Mapping) -> str:
    """One row per set and metric: A, B, B - A, its 95% paired interval, whether it excludes 0."""
    intro = (f"A = {comparison['a']}, B = {comparison['b']}; 95% paired bootstrap intervals "
             "(the same resamples of the patients, films where patients are unknown, for "
             "both; films matched by name).")
    cells = lambda row: [_fmt(row["a"]), _fmt(row["b"]), _fmt(row["difference"]),
                         f"[{_fmt(row['ci'][0])}, {_fmt(row['ci'][1])}]",
                         _yes(row["excludes_zero"])]
    lines = _table(intro, ["A", "B", "B - A", "95% interval", "excludes 0"],
                   comparison["sets"], cells)
    lines += [f"\nskipped {name}: {reason}" for name, reason in comparison["skipped"].items()]
    return "\n".join(lines) + "\n"


def seeds_markdown(comparison: Mapping) -> str:
    """One row per set and metric over the seeds' pairs: mean A, mean B, mean B - A, each
    seed's B - A (* where its paired interval excludes 0), the seed spread and ``holds``."""
    pairs = "; ".join(f"A = {c['a']}, B = {c['b']}" for c in comparison["pairs"])
    intro = (f"{len(comparison['pairs'])} seeds ({pairs}). Means over seeds; per seed B - A, * "
             "where its 95% paired interval excludes 0; spread: the larger sd over seeds of A "
             "and of B; holds: every seed agrees in sign and the mean exceeds the spread.")
    per_seed = lambda row: ", ".join(f"{d:+.3f}{'*' if x else ''}" for d, x in
                                     zip(row["per_seed"], row["per_seed_excludes_zero"]))
    cells = lambda row: [_fmt(row["a"]), _fmt(row["b"]), _fmt(row["difference"]),
                         per_seed(row), _fmt(row["seed_spread"]), _yes(row["holds"])]
    lines = _table(intro, ["A", "B", "B - A", "per seed", "spread", "holds"],
                   comparison["sets"], cells)
    return "\n".join(lines) + "\n"
