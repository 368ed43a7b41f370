"""scripts/bench_step.py and scripts/bench_predict.py at tiny sizes: their JSON, the nominal CPU
peak on made-up /proc/cpuinfo text, and the PyTorch rounds with stand-in processes (the
project's environment has no torch)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+ @ 2.00GHz
cpu MHz\t\t: 2000.000
siblings\t: 4
cpu cores\t: 2
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw amx_bf16 amx_tile

processor\t: 1
"""


def test_cpu_peak_from_the_model_name_with_avx512_and_amx():
    peak = _script("bench_step").cpu_peak_gflops(CPUINFO, lscpu="", logical_cpus=4)
    assert (peak["cores"], peak["threads_per_core"], peak["ghz"]) == (2, 2, 2.0)
    assert peak["ghz_source"] == "model name" and peak["fp32_isa"] == "avx512f"
    assert peak["float32_gflops"] == pytest.approx(2 * 2.0 * 64)
    assert peak["bfloat16_amx_nominal_gflops"] == pytest.approx(2 * 2.0 * 1024)


def test_cpu_peak_from_lscpu_then_cpu_mhz_and_without_simd():
    bench_step = _script("bench_step")
    avx2 = "model name\t: AMD EPYC\ncpu MHz\t\t: 1500.0\nflags\t\t: sse2 avx2 fma\n"
    peak = bench_step.cpu_peak_gflops(avx2, lscpu="CPU max MHz:  3000.0000\n", logical_cpus=3)
    assert (peak["ghz"], peak["ghz_source"], peak["cores"]) == (3.0, "lscpu CPU max MHz", 3)
    assert peak["float32_gflops"] == pytest.approx(3 * 3.0 * 32)
    assert peak["bfloat16_amx_nominal_gflops"] is None
    peak = bench_step.cpu_peak_gflops(avx2, lscpu="", logical_cpus=1)
    assert (peak["ghz"], peak["ghz_source"]) == (1.5, "cpuinfo cpu MHz")
    plain = bench_step.cpu_peak_gflops("cpu MHz\t: 1000\nflags\t: sse2\n", lscpu="",
                                       logical_cpus=1)
    assert plain["float32_gflops"] is None and plain["fp32_isa"] is None


def _fake_torch_processes(monkeypatch, module, steps: dict):
    """subprocess.run stand-in: the reference and each variant report ``steps[name]`` (a list
    popped per round); the compile variant reports an error; the cuda check says cpu."""
    calls = []

    def run(cmd, capture_output, text):
        name = cmd[cmd.index("--variants") + 1] if "--variants" in cmd else "reference"
        calls.append(name)
        if name == "compile":
            line = {name: {"error": "torch.compile failed: no C compiler"}}
        else:
            result = {"median_step_s": steps[name].pop(0), "images_per_step": 10}
            line = result if name == "reference" else {name: result}
        return types.SimpleNamespace(returncode=0, stdout=json.dumps(line) + "\n", stderr="")

    monkeypatch.setattr(module.subprocess, "run", run)
    return calls


def test_torch_rounds_reference_first_variants_and_the_fastest(monkeypatch, tmp_path):
    bench_step = _script("bench_step")
    reference = tmp_path / "torch_reference.py"
    reference.write_text("")
    calls = _fake_torch_processes(monkeypatch, bench_step, {
        "reference": [1.0, 3.0, 2.0], "channels_last": [0.5, 0.4, 0.6]})
    ref, variants = bench_step.run_torch("python", str(reference), 32, 2, 1, 0, repeats=3,
                                         variants=["channels_last", "compile"])
    assert calls == ["reference", "channels_last", "compile", "reference", "channels_last",
                     "reference", "channels_last"]  # a variant with an error is not rerun
    assert ref["median_step_s"] == 2.0 and ref["step_s"]["min"] == 1.0
    assert variants["channels_last"]["images_per_s"] == pytest.approx(10 / 0.5)
    assert variants["compile"] == {"error": "torch.compile failed: no C compiler"}
    name, best = bench_step.fastest_torch(ref, variants)
    assert name == "channels_last" and best is variants["channels_last"]


def test_torch_variants_names_are_checked():
    bench_step = _script("bench_step")
    assert bench_step.parse_torch_variants("fp32, compile") == ["fp32", "compile"]
    assert bench_step.parse_torch_variants("") == []
    with pytest.raises(SystemExit, match="--torch-variants fp16: unknown fp16"):
        bench_step.parse_torch_variants("fp16")


@pytest.mark.slow  # compiles the paper's network twice: ~45 s on 2 cores
def test_bench_step_json_has_the_step_flops_and_peak():
    out = _run("bench_step.py", "--size", "32", "--per-stream", "2", "--steps", "1",
               "--warmup", "0", "--repeats", "1")
    for key in ("median_step_s", "images_per_s", "compile_s", "flops_per_step",
                "gflops_per_s", "peak_gflops", "peak_fraction", "peak_assumption", "cpu_peak"):
        assert key in out, key
    assert out["flops_per_step"] > 0 and out["gflops_per_s"] > 0
    assert "torch_reference" not in out and "torch_variants" not in out


@pytest.mark.slow  # compiles predict per batch size: ~40 s on 2 cores
def test_bench_predict_json_has_a_row_per_size_and_batch():
    out = _run("bench_predict.py", "--sizes", "32", "--batches", "1", "2", "--calls", "1",
               "--warmup", "0", "--repeats", "1")
    assert out["bench"] == "predict"
    assert [(r["size"], r["batch"], r["flip_tta"]) for r in out["rows"]] == [
        (32, 1, False), (32, 2, False)]
    for row in out["rows"]:
        assert row["films_per_s"] > 0 and row["compile_s"] > 0
        assert set(row["films_per_s_spread"]) == {"median", "min", "max", "rounds"}


def test_profile_step_names_each_thunk_by_what_it_computes():
    profile = _script("profile_step")
    hlo = ('  %fusion.3 = f32[2,8,8,16]{3,2,1,0} fusion(%p), kind=kCustom, metadata={op_name='
           '"jit(train_step)/transpose(jvp(MultiMix.encode))/encoder/ConvBlock_0/Conv_1/'
           'conv_general_dilated" stack_frame_id=3}\n  ROOT %copy.1 = f32[2] copy(%x)\n')
    names = profile.op_names(hlo)
    assert names == {"fusion.3": "jit(train_step)/transpose(jvp(MultiMix.encode))/encoder/"
                                 "ConvBlock_0/Conv_1/conv_general_dilated", "copy.1": ""}
    assert profile.classify("fusion.3", names["fusion.3"]) == ("convolution", "backward",
                                                               "encoder")
    assert profile.classify("wrapped_iota.2", "") == ("random_bits", "forward",
                                                      "optimizer_and_losses")
    saliency = "jit(train_step)/jvp(jvp(MultiMix.classify))/MultiMix.encode/encoder/Dropout_0/x"
    assert profile.classify("f.1", saliency) == ("dropout", "forward", "saliency")
