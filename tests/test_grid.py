"""multimix_jax.grid (scripts/ablate.py's logic): budget dedupe, a killed grid that continues
without re-running finished cells, the report files with mean ± sd over seeds and each seed's
row (fast, with training stubbed out), and a real grid of 2 seeds x 1 variant (slow)."""

import csv
import json
import math
import pathlib

import pytest

from multimix_jax import evaluate, train
from multimix_jax import grid as ablate
from tests.conftest import tiny_train_config


def test_budget_dedupe_for_single_task_variants():
    cells = ablate.grid(["enc", "unet", "multimix"], [(100, 10), (100, 50), ("all", "all")], [0])
    assert [c for c in cells if c[0] == "enc"] == [("enc", (100, "-"), 0), ("enc", ("all", "-"), 0)]
    assert [c for c in cells if c[0] == "unet"] == [("unet", ("-", 10), 0), ("unet", ("-", 50), 0),
                                                     ("unet", ("-", "all"), 0)]
    assert len([c for c in cells if c[0] == "multimix"]) == 3
    assert ablate.parse_budget("all/all") == ("all", "all")
    with pytest.raises(ValueError):
        ablate.parse_budget("100")
    config = ablate.cell_config(tiny_train_config(), "enc", ("all", "-"), 3, 7)
    assert (config.labels.cls, config.seed, config.train.num_steps) == ("all", 3, 7)
    assert not config.tasks.segmentation and config.eval.model_name == "Enc"


class _Stub:
    """Stands in for train_and_evaluate + evaluate: records the runs, fails on demand, and
    returns metrics that depend on the seed (accuracy 0.5 + 0.1 * seed)."""

    def __init__(self):
        self.trained, self.fail_on = [], None

    def train(self, config, workdir, stop_at_step=None):
        key = (config.eval.model_name, str(config.labels.cls), str(config.labels.seg), config.seed)
        if key == self.fail_on:
            raise KeyboardInterrupt("killed")
        self.trained.append(key)
        pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)

    def evaluate(self, config, workdir, which="best", extra_sets=None, output_dir=None):
        results = {}
        if config.tasks.classification:
            cls = {"accuracy": 0.5 + 0.1 * config.seed, "f1_normal": 0.4, "f1_pneumonia": 0.6,
                   "roc_auc": 0.7, "n": 6}
            results["val_cls"], results["test_cls"] = cls, cls
        if config.tasks.segmentation:
            seg = {"dice": 0.8, "jaccard": 0.7, "hd": 1.5, "hd95": 1.0, "ssim": 0.9, "n": 5}
            results["val_seg"], results["test_seg"] = seg, seg
        return results


def test_killed_grid_continues_without_rerunning_finished_cells(tmp_path, monkeypatch):
    stub = _Stub()
    monkeypatch.setattr(train, "train_and_evaluate", stub.train)
    monkeypatch.setattr(evaluate, "evaluate", stub.evaluate)
    models, budgets, seeds = ["multimix", "enc", "unet"], [(8, 4), (8, "all")], [0, 1]
    # 2 + 1 + 2 unique budgets x 2 seeds = 10 cells; killed while running the 4th
    stub.fail_on = ("MultiMix", "8", "all", 1)
    with pytest.raises(KeyboardInterrupt):
        ablate.run_grid(tiny_train_config(), tmp_path, models, budgets, seeds, steps=2)
    assert len(stub.trained) == 3
    stub.fail_on, first = None, list(stub.trained)
    ablate.run_grid(tiny_train_config(), tmp_path, models, budgets, seeds, steps=2)
    assert len(stub.trained) == 10 and not set(stub.trained[3:]) & set(first)
    ablate.run_grid(tiny_train_config(), tmp_path, models, budgets, seeds, steps=2)
    assert len(stub.trained) == 10  # all finished: nothing runs
    cell = json.loads((tmp_path / "enc" / "8_-" / "seed1" / "cell.json").read_text())
    assert cell["steps"] == 2 and cell["wall_s"] >= 0 and cell["paper_row"]["Acc"] == 0.6

    ablate.report(tmp_path, models, budgets, seeds)
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert {"model", "budget_cls", "budget_seg", "seed", "wall_s", "test_cls/accuracy",
            "test_cls/f1_normal", "test_seg/dice", "test_seg/hd95", "val_cls/accuracy",
            "val_seg/ssim"} <= set(rows[0])
    unet = next(r for r in rows if r["model"] == "unet")
    assert unet["budget_cls"] == "-" and unet["test_cls/accuracy"] == "" and unet["test_seg/dice"]
    md = (tmp_path / "results.md").read_text()
    std = math.sqrt(((0.5 - 0.55) ** 2 + (0.6 - 0.55) ** 2) / 1)  # ddof=1 over seeds
    assert f"| Enc | 8/- | 2 | 0.550 ± {std:.3f} |" in md
    # one mean ± sd row per model and budget, then each seed's row
    assert md.count("| Enc |") == 3 and md.count("| U-Net |") == 6 and md.count("| MultiMix |") == 6
    assert "| Enc | 8/- | seed 0 | 0.500 |" in md and "| Enc | 8/- | seed 1 | 0.600 |" in md
    assert "| U-Net | -/4 | 2 | - | - | - | 0.800 ± 0.000 |" in md
    groups = json.loads((tmp_path / "results.json").read_text())["groups"]
    enc = next(g for g in groups if g["model"] == "enc")
    assert enc["seeds"] == [0, 1] and enc["mean"]["Acc"] == pytest.approx(0.55)
    assert enc["sd"]["Acc"] == pytest.approx(std) and [r["paper_row"]["Acc"] for r in enc["runs"]] == [0.5, 0.6]
    assert len(groups) == 5
    assert "x-Acc" not in md
    assert (tmp_path / "ablation.png").stat().st_size > 0


@pytest.mark.slow
def test_real_grid_from_the_command_line(tmp_path, monkeypatch):
    config_file = tmp_path / "tiny_config.py"
    config_file.write_text("from tests.conftest import tiny_train_config\n\n\n"
                           "def get_config():\n    return tiny_train_config()\n")
    outdir = tmp_path / "grid"
    argv = ["ablate", f"--config={config_file}", f"--outdir={outdir}", "--models=multimix",
            "--budgets=8/4", "--seeds=0,1", "--steps=2", "--config.train.eval_every_steps=1"]
    ablate.main(argv)

    seed0, seed1 = (outdir / "multimix" / "8_4" / f"seed{k}" / "cell.json" for k in (0, 1))
    cells = {p: json.loads(p.read_text()) for p in (seed0, seed1)}
    assert [c["seed"] for c in cells.values()] == [0, 1]
    assert cells[seed0]["steps"] == 2 and cells[seed0]["wall_s"] > 0
    assert 0 <= cells[seed0]["paper_row"]["DS"] <= 1 and "test_seg" in cells[seed0]["sets"]
    assert "ci" in cells[seed0]["sets"]["test_cls"]
    run_config = json.loads((seed1.parent / "config.json").read_text())
    assert run_config["train"]["eval_every_steps"] == 1 and run_config["seed"] == 1

    with open(outdir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["0", "1"]
    for col in ("model", "budget_cls", "budget_seg", "seed", "wall_s", "test_cls/accuracy",
                "test_cls/accuracy/lo", "test_cls/accuracy/hi", "test_cls/f1_pneumonia",
                "test_seg/dice", "test_seg/hd", "test_seg/ssim", "val_cls/accuracy", "val_seg/dice"):
        assert col in rows[0], col
    md = (outdir / "results.md").read_text()
    assert "| MultiMix | 8/4 | 2 | " in md and "±" in md
    assert "| MultiMix | 8/4 | seed 0 |" in md and "| MultiMix | 8/4 | seed 1 |" in md
    groups = json.loads((outdir / "results.json").read_text())["groups"]
    assert len(groups) == 1 and groups[0]["seeds"] == [0, 1] and len(groups[0]["runs"]) == 2
    assert (outdir / "ablation.png").stat().st_size > 0

    # rerun (and --report-only): nothing trains again, the finished cells stay as they are
    mtimes = {p: p.stat().st_mtime_ns for p in cells}

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was re-run")

    monkeypatch.setattr(train, "train_and_evaluate", fail)
    monkeypatch.setattr(evaluate, "evaluate", fail)
    ablate.main(argv)
    ablate.main(["ablate", f"--outdir={outdir}", "--models=multimix", "--budgets=8/4",
                 "--seeds=0,1", "--report-only"])
    assert {p: p.stat().st_mtime_ns for p in cells} == mtimes
    assert "±" in (outdir / "results.md").read_text()
