"""The ablation grid (paper Table 2 and its supplement): any config x variants x label budgets
x seeds (docs/multimix.md, Paper results). ``scripts/ablate.py`` is its command line.

Each cell trains in ``outdir/<model>/<cls>_<seg>/seed<k>`` (``train.train_and_evaluate``, which
resumes from that workdir) and is then evaluated (``evaluate.evaluate``, best checkpoint); its
metrics and wall time go to ``cell.json``. A cell with a ``cell.json`` is never re-run, so a killed
grid is continued by rerunning the same command. Single-task variants only see their own budget
(Enc/EncSSL: ``100_-``, U-Net: ``-_10``), so budgets differing only in the other task share one
cell. Seeds change ``config.seed`` (initialisation, data order, augmentation), not the labelled
subset (``data.split_seed``). The report: ``results.md`` (Table 2 layout: mean ± sd over seeds,
then each seed's row), ``results.csv`` (one row per cell, every set's metrics and intervals),
``results.json`` (per model and budget: seeds, mean, sd and each seed's row) and
``ablation.png`` (accuracy and Dice vs label budget, mean ± sd).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import pathlib
import time

import numpy as np

from multimix_jax import evaluation
from multimix_jax.files import write_atomically
from multimix_jax.variants import DISPLAY_NAMES, VARIANTS, apply_variant

NO_TASK = "-"
CELL_FILE = "cell.json"
ROLES = ("in_cls", "in_seg", "cross_cls", "cross_seg")


# --------------------------------------------------------------------------- grid
def parse_budget(text: str) -> tuple:
    """'100/10' -> (100, 10); 'all/all' -> ('all', 'all')."""
    parts = text.strip().split("/")
    if len(parts) != 2:
        raise ValueError(f"a budget is CLS/SEG (e.g. 100/10 or all/all), got {text!r}")
    return tuple(p if p == "all" else int(p) for p in parts)


def effective_budget(model: str, budget: tuple) -> tuple:
    """The budget a variant actually uses: the absent task's budget becomes '-'."""
    v = VARIANTS[model]
    return (budget[0] if v["cls"] else NO_TASK, budget[1] if v["seg"] else NO_TASK)


def cell_dir(outdir: pathlib.Path, model: str, eff: tuple, seed: int) -> pathlib.Path:
    return outdir / model / f"{eff[0]}_{eff[1]}" / f"seed{seed}"


def grid(models, budgets, seeds) -> list[tuple]:
    """Unique (model, effective budget, seed) cells in run order."""
    cells = []
    for model in models:
        for budget in budgets:
            for seed in seeds:
                cell = (model, effective_budget(model, budget), seed)
                if cell not in cells:
                    cells.append(cell)
    return cells


def cell_config(base, model: str, eff: tuple, seed: int, steps: int | None):
    config = apply_variant(copy.deepcopy(base), model)
    if eff[0] != NO_TASK:
        config.labels.cls = eff[0]
    if eff[1] != NO_TASK:
        config.labels.seg = eff[1]
    config.seed = seed
    if steps:
        config.train.num_steps = steps
    return config


def run_cell(base, outdir: pathlib.Path, model: str, eff: tuple, seed: int, steps) -> dict:
    from multimix_jax import evaluate, train  # heavy imports only when training
    workdir = cell_dir(outdir, model, eff, seed)
    config = cell_config(base, model, eff, seed, steps)
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    results = evaluate.evaluate(config, workdir, which="best")
    layout = {role: config.eval.table[role] for role in ROLES}
    cell = {"model": model, "display": DISPLAY_NAMES[model], "budget_cls": eff[0],
            "budget_seg": eff[1], "seed": seed, "steps": int(config.train.num_steps),
            "wall_s": time.perf_counter() - start, "layout": layout, "sets": results,
            "paper_row": evaluation.paper_row(results, layout)}
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomically(workdir / CELL_FILE, json.dumps(cell, indent=2, default=float))
    return cell


def run_grid(base, outdir, models, budgets, seeds, steps=None) -> None:
    outdir = pathlib.Path(outdir)
    cells = grid(models, budgets, seeds)
    for k, (model, eff, seed) in enumerate(cells, 1):
        name = f"{model} {eff[0]}/{eff[1]} seed{seed}"
        if (cell_dir(outdir, model, eff, seed) / CELL_FILE).exists():
            print(f"[{k}/{len(cells)}] {name}: done already", flush=True)
            continue
        walls = [c["wall_s"] for c in load_cells(outdir, cells).values()]
        left = sum(not (cell_dir(outdir, *c) / CELL_FILE).exists() for c in cells)
        eta = f"{np.mean(walls) * left / 60:.1f} min" if walls else "unknown"
        print(f"[{k}/{len(cells)}] {name}: running ({left} cells left, ETA {eta})", flush=True)
        cell = run_cell(base, outdir, model, eff, seed, steps)
        print(f"[{k}/{len(cells)}] {name}: finished in {cell['wall_s']:.0f} s", flush=True)


# --------------------------------------------------------------------------- report
def load_cells(outdir: pathlib.Path, cells) -> dict:
    found = {}
    for cell in cells:
        path = cell_dir(outdir, *cell) / CELL_FILE
        if path.exists():
            found[cell] = json.loads(path.read_text())
    return found


def _is_nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample sd (ddof 1; NaN below two values) and count of the values that are not
    missing."""
    values = [float(v) for v in values if not _is_nan(v)]
    if not values:
        return math.nan, math.nan, 0
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return float(np.mean(values)), sd, len(values)


def format_mean_sd(mean: float, sd: float, count: int, runs: int) -> str:
    """'mean ± sd' over ``runs`` runs; the count where fewer runs have the figure ('0.80 (1 of
    3)' with no sd below two); '-' where none has it."""
    if count == 0:
        return "-"
    text = f"{mean:.3f}" if count < 2 else f"{mean:.3f} ± {sd:.3f}"
    return text if count == runs else f"{text} ({count} of {runs})"


def _flat_set(name: str, values: dict) -> dict:
    """A set's results as CSV columns: ``SET/METRIC`` and ``SET/METRIC/lo``, ``.../hi`` of its
    interval (the trivial rules stay in cell.json)."""
    row = {f"{name}/{k}": v for k, v in values.items() if not isinstance(v, (dict, list))}
    for key, (lo, hi) in values.get("ci", {}).items():
        row[f"{name}/{key}/lo"], row[f"{name}/{key}/hi"] = lo, hi
    return row


def write_csv(path: pathlib.Path, cells: dict) -> list[str]:
    """One row per cell (each seed's row): its settings and every set's metrics."""
    base = ["model", "budget_cls", "budget_seg", "seed", "steps", "wall_s"]
    columns, rows = list(base), []
    for cell in cells.values():
        sets = [s for s in ["val_cls", "val_seg", *(cell["layout"][r] for r in ROLES)] if s]
        row = {k: cell[k] for k in base}
        for name in dict.fromkeys(sets):  # de-duplicated, ordered
            row.update(_flat_set(name, cell["sets"].get(name, {})))
        for col in row:
            if col not in columns:
                columns.append(col)
        rows.append(row)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return columns


def summary(cells: dict, models, budgets) -> list[dict]:
    """Per model and effective budget, in grid order: the seeds, the mean, sd (ddof=1; NaN
    for one seed) and count of runs of each Table 2 column over them, and each seed's row."""
    groups = []
    for model in models:
        for eff in dict.fromkeys(effective_budget(model, b) for b in budgets):
            runs = [c for (m, e, _), c in cells.items() if m == model and e == eff]
            if not runs:
                continue
            stats = {col: mean_std(r["paper_row"][col] for r in runs)
                     for col in evaluation.PAPER_COLUMNS}  # (mean, sd, count)
            groups.append({"model": model, "display": DISPLAY_NAMES[model],
                           "budget_cls": eff[0], "budget_seg": eff[1],
                           "seeds": [r["seed"] for r in runs],
                           "mean": {c: m for c, (m, _, _) in stats.items()},
                           "sd": {c: sd for c, (_, sd, _) in stats.items()},
                           "count": {c: n for c, (_, _, n) in stats.items()},
                           "runs": [{"seed": r["seed"], "wall_s": r["wall_s"],
                                     "paper_row": r["paper_row"]} for r in runs]})
    return groups


def markdown_table(groups: list[dict]) -> str:
    """Table 2 layout: each model and budget's mean ± sd over its seeds, then one row per
    seed."""
    cross = any(not _is_nan(g["mean"][c]) for g in groups for c in ("x-Acc", "x-DS"))
    columns = [c for c in evaluation.PAPER_COLUMNS if cross or not c.startswith("x-")]
    lines = ["| model | D_l^c/D_l^s | seeds | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for g in groups:
        budget = f"{g['budget_cls']}/{g['budget_seg']}"
        entries = [format_mean_sd(g["mean"][c], g["sd"][c], g["count"][c], len(g["runs"]))
                   for c in columns]
        lines.append(f"| {g['display']} | {budget} | {len(g['runs'])} | "
                     + " | ".join(entries) + " |")
        for run in g["runs"]:
            lines.append(f"| {g['display']} | {budget} | seed {run['seed']} | " + " | ".join(
                evaluation.format_value(run["paper_row"][c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot(path: pathlib.Path, groups: list[dict], models, budgets) -> None:
    """Accuracy and Dice against the label budget, mean ± sd over seeds, per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{b[0]}/{b[1]}" for b in budgets]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, title in zip(axes, ("Acc", "DS"), ("classification accuracy", "Dice")):
        for i, model in enumerate(models):
            by_budget = {(g["budget_cls"], g["budget_seg"]): g for g in groups
                         if g["model"] == model}
            xs, means, sds = [], [], []
            for x, budget in enumerate(budgets):
                g = by_budget.get(effective_budget(model, budget))
                if g is not None and not _is_nan(g["mean"][col]):
                    sd = g["sd"][col]
                    xs.append(x), means.append(g["mean"][col]), sds.append(0 if _is_nan(sd) else sd)
            if xs:
                ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, color=f"C{i % 10}",
                            label=DISPLAY_NAMES[model])
        ax.set_xticks(range(len(budgets)), labels)
        ax.set_xlabel("label budget |D_l^c| / |D_l^s|")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(outdir, models, budgets, seeds) -> dict:
    """Writes results.csv, results.md, results.json and ablation.png from the finished cells."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cells = load_cells(outdir, grid(models, budgets, seeds))
    groups = summary(cells, models, budgets)
    write_csv(outdir / "results.csv", cells)
    table = markdown_table(groups)
    write_atomically(outdir / "results.md", table)
    write_atomically(outdir / "results.json", json.dumps({"groups": groups}, indent=2,
                                                         default=float))
    plot(outdir / "ablation.png", groups, models, budgets)
    print(table)
    print(f"{len(cells)} cells; wrote {outdir}/results.csv, results.md, results.json, "
          "ablation.png", flush=True)
    return cells


# --------------------------------------------------------------------------- command line
def main(argv: list[str], usage: str = "") -> None:
    """The command line of scripts/ablate.py: parse ``argv`` (argv[0] is the program name) with
    its own flag registry, so this can be called in-process (tests) without touching absl's
    global flags; ``usage`` is printed by --help."""
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Base config file (configs/*.py).",
                                    flag_values=fv, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("outdir", None, "Grid root.", flag_values=fv)
    flags.DEFINE_list("models", list(VARIANTS), "Variants (multimix_jax/variants.py).", flag_values=fv)
    flags.DEFINE_list("budgets", ["100/10", "1000/50", "all/all"], "CLS/SEG label budgets.",
                      flag_values=fv)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "config.seed values (e.g. 0,1,2).",
                      flag_values=fv)
    flags.DEFINE_integer("steps", None, "config.train.num_steps of each run (default: config's).",
                         flag_values=fv)
    flags.DEFINE_bool("report_only", False, "Only write the report from finished cells.",
                      flag_values=fv)
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(usage + "\nflags:\n" + fv.get_help())
        return
    fv([a.replace("--report-only", "--report_only") for a in argv])
    if fv.outdir is None:
        raise flags.ValidationError("--outdir is required")
    models = [m.lower().replace("-", "_") for m in fv.models]
    for m in models:
        if m not in VARIANTS:
            raise flags.ValidationError(f"unknown model {m!r}; choose from {sorted(VARIANTS)}")
    budgets = [parse_budget(b) for b in fv.budgets]
    seeds = [int(s) for s in fv.seeds]
    if not fv.report_only:
        if fv.config is None:
            raise flags.ValidationError("--config is required (unless --report-only)")
        run_grid(fv.config, fv.outdir, models, budgets, seeds, fv.steps)
    report(fv.outdir, models, budgets, seeds)
