"""scripts/make_site_proxy.py on the embedded data at 32 px: the pool and the evaluation half
share no film, each evaluation set has the asked-for prior, masks stay binary; --seg_disease
paints the segmentation films and nothing else."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def _make_site(out, *extra):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_site_proxy.py"), "--config",
         str(REPO / "configs" / "default.py"), "--config.data.image_size=32", "--out", str(out),
         "--per_set", "20", "--priors", "0.25,0.75", *extra], capture_output=True, text=True,
        cwd=REPO)


def _folder(path):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def plain_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy") / "site"
    done = _make_site(out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_site_proxy_parts_are_disjoint_with_the_asked_priors(plain_site):
    out = plain_site
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
    again = _make_site(out)
    assert again.returncode != 0 and "exists" in again.stderr


def test_seg_disease_paints_the_segmentation_films_only(plain_site, tmp_path):
    plain, ill = plain_site, tmp_path / "ill"
    done = _make_site(ill, "--seg_disease")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((ill / "site.json").read_text())["seg"]["severe_disease"] is True
    for part in ("pool/seg", "eval/seg/images"):
        a, b = _folder(plain / part), _folder(ill / part)
        assert a.keys() == b.keys()
        assert all(a[k].shape == b[k].shape for k in a)
        # painted: the films differ; the classification films do not
        assert sum(not np.array_equal(a[k], b[k]) for k in a) >= len(a) // 2
    a, b = _folder(plain / "pool" / "cls"), _folder(ill / "pool" / "cls")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    masks = _folder(ill / "eval" / "seg" / "masks")
    assert masks and all(set(np.unique(m)) <= {0, 255} for m in masks.values())
