"""scripts/make_site_proxy.py on the embedded data at 32 px: the pool and the evaluation half
share no film, each evaluation set has the asked-for prior, masks stay binary."""

import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_site_proxy_parts_are_disjoint_with_the_asked_priors(tmp_path):
    out = tmp_path / "site"
    run = lambda: subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_site_proxy.py"), "--config",
         str(REPO / "configs" / "default.py"), "--config.data.image_size=32", "--out", str(out),
         "--per_set", "20", "--priors", "0.25,0.75"], capture_output=True, text=True, cwd=REPO)
    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "site.json").read_text())
    assert set(record["priors"]) == {"0.25", "0.75"}
    pool = {p.name for p in (out / "pool" / "cls").iterdir()}
    for prior in ("0.25", "0.75"):
        folder = out / "eval" / f"cls_prior_{prior}"
        normal = {p.name for p in (folder / "NORMAL").iterdir()}
        pneumonia = {p.name for p in (folder / "PNEUMONIA").iterdir()}
        assert not (normal | pneumonia) & pool and not normal & pneumonia
        assert len(pneumonia) / (len(normal) + len(pneumonia)) == float(prior)
    masks = [np.asarray(Image.open(p)) for p in (out / "eval" / "seg" / "masks").iterdir()]
    assert masks and all(set(np.unique(m)) <= {0, 255} for m in masks)
    assert not {p.name for p in (out / "pool" / "seg").iterdir()} & {
        p.name for p in (out / "eval" / "seg" / "images").iterdir()}
    again = run()
    assert again.returncode != 0 and "exists" in again.stderr
