"""predict: one set of outputs per input image, never shared; the stored decision threshold;
skipped non-image files are counted (tests/fake_model.py stands in for a checkpoint)."""

import csv
import json
import logging

import numpy as np
import pytest
from PIL import Image

from multimix_jax import predict
from multimix_jax.errors import UserError
from tests import fake_model
from tests.conftest import tiny_train_config
from tests.fixtures_util import write_jpeg

# the clash of the old naming: a/x.jpeg, a/x_2.jpeg and b/x.jpeg (uniform gray levels)
CLASH = {"a/x.jpeg": 50, "a/x_2.jpeg": 100, "b/x.jpeg": 200}


def _clash_tree(root):
    for name, value in CLASH.items():
        write_jpeg(root / name, value, side=40)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0")  # system file: ignored, not counted
    return root


@pytest.mark.parametrize("given", ["folder", "files"])
def test_every_input_gets_its_own_outputs(tmp_path, monkeypatch, caplog, given):
    fake_model.install(monkeypatch, threshold=0.3)
    root = _clash_tree(tmp_path / "in")
    inputs = ([str(root)] if given == "folder" else [str(root / name) for name in CLASH]
              + [str(root / "a" / "notes.txt")])
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="multimix_jax"):
        rows = predict.predict_files(tiny_train_config(), tmp_path / "run", inputs, out)

    assert [row["outputs"] for row in rows] == list(CLASH)  # the input paths, mirrored
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pngs == sorted(f"{name}_{kind}.png" for name in CLASH for kind in predict.OUTPUT_KINDS)
    for row in rows:  # each row's outputs come from its own image
        value = CLASH[row["outputs"]]
        assert row["file"] == str(root / row["outputs"])
        assert row["prob_pneumonia"] == pytest.approx(value / 255, abs=0.02)
        overlay = np.asarray(Image.open(out / f"{row['outputs']}_overlay.png"))
        assert overlay.shape == (32, 32, 3)
        assert np.asarray(Image.open(out / f"{row['outputs']}_mask.png")).max() == (
            255 if value >= 128 else 0)
    # the stored threshold, 0.3, decides: gray 100 (P = 0.39) is PNEUMONIA, not at 0.5
    assert [row["predicted"] for row in rows] == ["NORMAL", "PNEUMONIA", "PNEUMONIA"]
    assert all(row["threshold"] == 0.3 for row in rows)

    saved = json.loads((out / "predictions.json").read_text())
    assert saved["predictions"] == rows and saved["threshold"] == 0.3
    assert saved["skipped_non_images"] == 1 and saved["skipped_files"] == [str(root / "a" / "notes.txt")]
    assert "skipped 1 file(s) that are not images" in caplog.text
    with open(out / "predictions.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == predict.CSV_COLUMNS
    assert [r["outputs"] for r in table] == list(CLASH) and len({r["outputs"] for r in table}) == 3


def test_output_names(tmp_path):
    for name in ("p/a/x.jpeg", "q/a/x.jpeg", "p/a/x.png", "p/a/sub/y.png"):
        write_jpeg(tmp_path / name, 10)
    # files given directly in one folder: their names; same stem, other extension: apart
    found = predict.collect_inputs([str(tmp_path / "p/a/x.jpeg"), str(tmp_path / "p/a/x.png")])
    assert found.names == ["x.jpeg", "x.png"]
    # two folders of the same name: the folders above tell them apart
    found = predict.collect_inputs([str(tmp_path / "p/a"), str(tmp_path / "q/a")])
    assert found.names == ["p/a/sub/y.png", "p/a/x.jpeg", "p/a/x.png", "q/a/x.jpeg"]
    # a file given twice, or also inside a given folder, counts once
    found = predict.collect_inputs([str(tmp_path / "q/a"), str(tmp_path / "q/a/x.jpeg")])
    assert found.names == ["x.jpeg"]


def test_earlier_outputs_inside_an_input_folder_are_not_inputs(tmp_path):
    write_jpeg(tmp_path / "x.jpeg", 10)
    write_jpeg(tmp_path / "predictions" / "x.jpeg_mask.png", 10)
    found = predict.collect_inputs([str(tmp_path)], exclude=tmp_path / "predictions")
    assert found.names == ["x.jpeg"] and found.skipped == []


def test_bad_inputs_are_one_sentence(tmp_path):
    with pytest.raises(UserError, match="--inputs .*nowhere: no such file or folder"):
        predict.collect_inputs([str(tmp_path / "nowhere")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no image files there"):
        predict.collect_inputs([str(tmp_path)])


def test_a_second_predict_replaces_the_earlier_outputs(tmp_path, monkeypatch):
    fake_model.install(monkeypatch, threshold=0.5)
    write_jpeg(tmp_path / "in" / "a.jpeg", 50)
    write_jpeg(tmp_path / "in" / "b.jpeg", 60)
    out = tmp_path / "out"
    predict.predict_files(tiny_train_config(), tmp_path / "run", [str(tmp_path / "in")], out)
    (out / "notes.txt").write_text("the user's own file")
    predict.predict_files(tiny_train_config(), tmp_path / "run", [str(tmp_path / "in" / "b.jpeg")],
                          out)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == sorted(["notes.txt", "predictions.csv", "predictions.json"]
                          + [f"b.jpeg_{kind}.png" for kind in predict.OUTPUT_KINDS])
    assert "NaN" not in (out / "predictions.json").read_text()


def test_an_output_inside_the_inputs_is_skipped_and_said(tmp_path):
    write_jpeg(tmp_path / "predictions" / "x.jpeg_mask.png", 10)
    with pytest.raises(UserError, match="outside --output .*predictions, which is inside them"):
        predict.collect_inputs([str(tmp_path)], exclude=tmp_path / "predictions")
