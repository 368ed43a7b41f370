"""files: strict JSON (NaN -> null) and outputs staged then moved in over an earlier run's."""

import json
import math

import numpy as np

from multimix_jax import evaluation, files


def test_results_json_is_strict_json_with_null_for_nan(tmp_path):
    results = {"one_class": {"accuracy": 1.0, "roc_auc": math.nan, "n": np.int64(3)}}
    json_path, _ = evaluation.write_results(tmp_path, results, {}, "m", "1/1", threshold=0.5)
    text = json_path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert loaded["sets"]["one_class"] == {"accuracy": 1.0, "roc_auc": None, "n": 3}


def test_staged_outputs_replace_what_the_earlier_run_owned(tmp_path):
    out = tmp_path / "out"
    (out / "examples").mkdir(parents=True)
    (out / "examples" / "old.png").write_text("old")
    (out / "results.json").write_text("old")
    (out / "mine.txt").write_text("the user's")
    staging = files.staging_folder(out, "evaluate")
    (staging / "examples").mkdir()
    (staging / "examples" / "new.png").write_text("new")
    (staging / "results.json").write_text("new")
    files.move_outputs_in(staging, out, owned=["results.json", "examples"], last=["results.json"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "examples/new.png", "mine.txt", "results.json"]
    assert (out / "results.json").read_text() == "new" and not staging.exists()
    left = files.staging_folder(out, "evaluate")  # a killed run's staging is cleared next time
    again = files.staging_folder(out, "evaluate")
    assert not left.exists() and again.exists()
