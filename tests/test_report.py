"""report.html from a tiny evaluation (tests/fake_model.py for the checkpoint): one
self-contained page with every section and figure, parsed with html.parser; a screenshot in a
headless browser when one is installed (slow)."""

import base64
import html.parser
import io
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from multimix_jax import evaluate, names, report
from tests import fake_model
from tests.conftest import tiny_train_config


class _Page(html.parser.HTMLParser):
    """Sections (id), figures (class) with their image sources, and every external reference."""

    def __init__(self):
        super().__init__()
        self.sections, self.figures, self.external = {}, [], []
        self._section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = []
        if tag == "figure":
            self.figures.append((self._section, attrs["class"]))
        if tag == "img":
            self.sections[self._section].append((self.figures[-1][1], attrs["src"]))
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag in ("script", "link"):
            self.external.append(tag)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_model.install(monkeypatch, threshold=0.9)  # calls (nearly) every film normal
        evaluate.evaluate(tiny_train_config(), tmp / "run", output_dir=tmp / "out")
    return tmp / "out" / "report.html"


def test_report_has_every_section_and_figure(page):
    text = page.read_text()
    parsed = _Page()
    parsed.feed(text)
    assert parsed.external == []  # self-contained: every image is a data: URI
    assert list(parsed.sections) == ["run", "set-val_cls", "set-val_seg", "set-test_cls",
                                     "set-test_seg"]
    for name in ("val_cls", "test_cls"):
        kinds = [kind for kind, _ in parsed.sections[f"set-{name}"]]
        assert {"roc", "reliability", "confusion"} <= set(kinds), kinds
        assert "film" in kinds  # the most confident errors
    for name in ("val_seg", "test_seg"):
        kinds = [kind for kind, _ in parsed.sections[f"set-{name}"]]
        assert kinds.count("distribution") == 1 and kinds.count("film") == min(
            report.WORST_FILMS, {"val_seg": 4, "test_seg": 5}[name])
    for _, images in parsed.sections.items():
        for _, src in images:  # every figure is a PNG that decodes
            png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            assert png.format == "PNG" and min(png.size) > 20
    for needle in ("threshold", "0.900", "temperature", "step", "95% interval", "all pneumonia",
                   "training prior", "ECE", "HD95", "&quot;image_size&quot;: 32"):
        assert needle in text, needle


def test_worst_films():
    films = {"label": np.array([0, 1, 0, 1, 0]), "prob_pneumonia": np.array([.9, .1, .6, .8, .2])}
    # errors at 0.5: film 0 (0.9, normal), 1 (0.1, pneumonia), 2 (0.6, normal); farthest first
    assert list(report.worst_films(names.CLASSIFICATION, films, 0.5)) == [0, 1, 2]
    assert list(report.worst_films(names.CLASSIFICATION, films, 0.5, count=1)) == [0]
    seg = {"dice": np.array([0.9, 0.2, 0.5, 0.95, 0.1, 0.7])}
    assert list(report.worst_films(names.SEGMENTATION, seg, 0.5)) == [4, 1, 2, 5]


def _browser():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_browser() is None, reason="no headless chromium installed")
def test_report_screenshot(page, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape[:2] == (2400, 1200) and image.std() > 10  # rendered, not blank


def test_a_calibrated_set_shows_calibration_before_and_after():
    from multimix_jax import metrics
    labels = np.array([0, 1] * 10)
    raw = np.where(labels == 1, 0.9, 0.6)
    films = {"label": labels, "prob_pneumonia": np.where(labels == 1, 0.8, 0.3),
             "prob_pneumonia_uncalibrated": raw}
    result = {**metrics.classification_metrics(labels, films["prob_pneumonia"]),
              **metrics.calibration_metrics(labels, films["prob_pneumonia"]),
              "ece_uncalibrated": metrics.calibration_metrics(labels, raw)["ece"]}
    page = report.set_html(report.SetSection("shifted", names.CLASSIFICATION, result, films, 0.5))
    assert "ECE before calibration" in page and "<p>none</p>" in page  # no errors at 0.5
    parsed = _Page()
    parsed.feed(page)
    assert [kind for kind, _ in parsed.sections["set-shifted"]] == ["roc", "reliability",
                                                                   "confusion"]
    fig = report.reliability_figure(labels, {"before calibration": raw,
                                             "after calibration": films["prob_pneumonia"]})
    labels_drawn = [line.get_label() for line in fig.axes[0].lines]
    assert labels_drawn[1:] == ["before calibration (ECE 0.350)", "after calibration (ECE 0.250)"]
