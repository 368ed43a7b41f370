"""scripts/ablate.py: budget dedupe, a killed grid that continues without re-running finished
cells, the report files (fast, with training stubbed out), and a real 2-step grid (slow)."""

import csv
import importlib.util
import json
import math
import pathlib

import pytest

from multimix_jax import evaluate, train
from tests.conftest import tiny_train_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _load_ablate():
    spec = importlib.util.spec_from_file_location("ablate", REPO / "scripts" / "ablate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ablate = _load_ablate()


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
    assert md.count("| Enc |") == 1 and md.count("| U-Net |") == 2 and md.count("| MultiMix |") == 2
    assert "| U-Net | -/4 | 2 | - | - | - | 0.800 ± 0.000 |" in md
    assert "x-Acc" not in md
    assert (tmp_path / "ablation.png").stat().st_size > 0


@pytest.mark.slow
def test_real_grid_from_the_command_line(tmp_path, monkeypatch):
    config_file = tmp_path / "tiny_config.py"
    config_file.write_text("from tests.conftest import tiny_train_config\n\n\n"
                           "def get_config():\n    return tiny_train_config()\n")
    outdir = tmp_path / "grid"
    argv = ["ablate", f"--config={config_file}", f"--outdir={outdir}", "--models=multimix,enc",
            "--budgets=8/4", "--seeds=0", "--steps=2", "--config.train.eval_every_steps=1"]
    ablate.main(argv)

    multimix = outdir / "multimix" / "8_4" / "seed0" / "cell.json"
    enc = outdir / "enc" / "8_-" / "seed0" / "cell.json"
    cells = {p: json.loads(p.read_text()) for p in (multimix, enc)}
    assert cells[multimix]["steps"] == 2 and cells[multimix]["wall_s"] > 0
    assert 0 <= cells[multimix]["paper_row"]["DS"] <= 1 and "test_seg" in cells[multimix]["sets"]
    assert "test_seg" not in cells[enc]["sets"] and 0 <= cells[enc]["paper_row"]["Acc"] <= 1
    run_config = json.loads((multimix.parent / "config.json").read_text())
    assert run_config["train"]["eval_every_steps"] == 1 and run_config["model"]["use_bridge"]
    assert json.loads((enc.parent / "config.json").read_text())["tasks"]["segmentation"] is False

    with open(outdir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for col in ("model", "budget_cls", "budget_seg", "seed", "wall_s", "test_cls/accuracy",
                "test_cls/f1_pneumonia", "test_seg/dice", "test_seg/hd", "test_seg/ssim",
                "val_cls/accuracy", "val_seg/dice"):
        assert col in rows[0], col
    md = (outdir / "results.md").read_text()
    assert "±" in md and "| MultiMix | 8/4 |" in md and "| Enc | 8/- |" in md
    assert (outdir / "ablation.png").stat().st_size > 0

    # rerun (and --report-only): nothing trains again, the finished cells stay as they are
    mtimes = {p: p.stat().st_mtime_ns for p in cells}

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was re-run")

    monkeypatch.setattr(train, "train_and_evaluate", fail)
    monkeypatch.setattr(evaluate, "evaluate", fail)
    ablate.main(argv)
    ablate.main(["ablate", f"--outdir={outdir}", "--models=multimix,enc", "--budgets=8/4",
                 "--seeds=0", "--report-only"])
    assert {p: p.stat().st_mtime_ns for p in cells} == mtimes
    assert "±" in (outdir / "results.md").read_text()
