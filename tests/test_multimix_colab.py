"""scripts/multimix_colab.ipynb picks its run from the runtime (the real model at 256 px on a
GPU/TPU, a tiny one on a CPU) and runs top to bottom on this CPU in a kernel on this
interpreter, without errors, and shows the results table."""

import json
import os
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "scripts" / "multimix_colab.ipynb"


def _kernel_on_this_interpreter(tmp_path, monkeypatch) -> None:
    """Make the 'python3' kernel run sys.executable. jupyter_client replaces a bare
    'python'/'python3' argv[0] by sys.executable; any other interpreter gets a kernelspec of our
    own, found first through JUPYTER_PATH."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        argv0 = None
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    if argv0 in bare or (argv0 and os.path.realpath(argv0) == os.path.realpath(sys.executable)):
        return
    from ipykernel import kernelspec
    kernelspec.install(kernel_name="python3", prefix=str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter" / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in bare or os.path.realpath(spec.argv[0]) == os.path.realpath(sys.executable)


def test_notebook_is_valid_and_does_not_force_a_platform():
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = "\n".join(cell.source for cell in nb.cells)
    assert "JAX_PLATFORMS" not in source and 'RUN = "auto"' in source
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


class _FakeDevice:
    def __init__(self, platform, capability=None):
        self.platform, self.device_kind = platform, f"fake {platform}"
        if capability is not None:
            self.compute_capability = capability


class _FakeJax:
    """What the parameters cell asks of ``jax``: the backend and the devices."""

    def __init__(self, device):
        self._device = device

    def default_backend(self):
        return self._device.platform

    def devices(self):
        return [self._device]

    def device_count(self):
        return 1


def _parameters_cell_config(device, tmp_path, monkeypatch):
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c.source for c in nb.cells if c.cell_type == "code" and 'RUN = "auto"' in c.source)
    monkeypatch.setenv("MULTIMIX_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO))
    namespace = {"jax": _FakeJax(device), "os": os}
    exec(compile(cell, "parameters cell", "exec"), namespace)
    return namespace["RUN"], namespace["config"]


@pytest.mark.parametrize("device, run, size, dtype", [
    (_FakeDevice("gpu", "9.0"), "accelerator", 256, "bfloat16"),
    (_FakeDevice("gpu", "7.5"), "accelerator", 256, "float32"),  # a T4: no native bfloat16
    (_FakeDevice("tpu"), "accelerator", 256, "bfloat16"),
    (_FakeDevice("cpu"), "small", 32, "float32"),
])
def test_runtime_picks_the_run(device, run, size, dtype, tmp_path, monkeypatch):
    picked, config = _parameters_cell_config(device, tmp_path, monkeypatch)
    assert (picked, config.data.image_size, config.model.dtype) == (run, size, dtype)
    if run == "accelerator":
        assert tuple(config.model.widths) == (16, 32, 64, 128, 256)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbclient
    import nbformat
    _kernel_on_this_interpreter(tmp_path, monkeypatch)
    workdir = tmp_path / "run"
    monkeypatch.setenv("MULTIMIX_NOTEBOOK_WORKDIR", str(workdir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "nothing to install" in text  # the local checkout imports: no pip install ran
    assert "RUN = 'small' on 1 x cpu: 32 px" in text  # it says what it ran
    assert "JAX" in text and any("Device" in o.data.get("text/plain", "") for o in outputs
                                 if o.output_type == "execute_result")  # jax.devices()
    markdown = [o.data["text/markdown"] for o in outputs
                if o.output_type == "display_data" and "text/markdown" in o.get("data", {})]
    assert any("| model | D_l^c/D_l^s |" in md and "| MultiMix |" in md for md in markdown)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # curves, saliency/masks, example strips
    results = json.loads((workdir / "results.json").read_text())
    assert {"val_cls", "val_seg", "test_cls", "test_seg"} <= set(results["sets"])
    assert (workdir / "metrics.jsonl").exists() and list((workdir / "examples").glob("*.png"))
