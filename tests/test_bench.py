"""The benchmark scripts in bench/ run (quick/tiny modes) and print what they promise.

Marked ``bench``: the unit tests (``python -m pytest``) leave them out, and ``.ci/run`` runs
them with the README's ``python -m pytest -m bench``.

No timing or memory assertions: the numbers of a loaded CI machine mean nothing; we check the
exit code, the table rows and that the ratio lines parse as positive numbers. The scripts run
with one torch thread, which keeps them fast when other processes share the CPUs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench  # run apart from the unit tests: python -m pytest -m bench
ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def run_bench(script: str, *args: str, timeout: float = 180) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{output}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"{script} printed nothing; stderr:\n{done.stderr}"
    return lines


def ratio(line: str, pattern: str) -> float:
    match = re.fullmatch(pattern, line)
    assert match, f"{line!r} does not match {pattern!r}"
    value = float(match.group(1))
    assert value > 0, line
    return value


@pytest.mark.slow
def test_gpu_iteration_tiny_prints_a_row_per_configuration():
    configurations = ("float32", "24gb")  # the plain one and all the switches at once
    lines = run_bench(
        "gpu_iteration.py", "--tiny", "--threads", "1", "--precisions", *configurations
    )
    rows = {}
    for line in lines:
        fields = line.split()
        if fields and fields[0] in configurations:
            rows[(fields[0], int(fields[1]))] = fields[2:]
    assert set(rows) == {(p, b) for p in configurations for b in (1, 2)}, lines
    for key, (per_iteration, per_image, achieved, peak, total) in rows.items():
        assert float(per_iteration) > 0 and float(per_image) > 0 and float(total) > 0, key
        assert float(peak) > 0, key  # the process's resident peak on the CPU, in MiB
        assert float(achieved) > 0, key  # TFLOP/s: the counted FLOPs over the time
    costs = next(line for line in lines if line.startswith("gpu_costs: {"))
    assert "iteration_seconds" in costs and "inversion_seconds" in costs, costs
    assert "basis: 'measured'" in costs and "gpu: 'cpu'" in costs, costs
    total = next(line for line in lines if line.strip().startswith("total:"))
    assert float(total.split()[-1]) > 0, total  # projected GPU-hours of config.yaml


@pytest.mark.slow
def test_edict_time_quick_prints_the_ratios_last():
    lines = run_bench("edict_time.py", "--quick", "--threads", "1")
    assert any(line.startswith("forward h (no grad)") for line in lines), lines
    for gradient in ("autograd", "reversible", "recompute"):
        assert any(line.startswith(f"MAP iteration ({gradient})") for line in lines), lines
    ratio(lines[-3], rf"MAP iteration / forward h = {NUMBER} \(reference, autograd\)")
    ratio(lines[-2], rf"MAP iteration / forward h = {NUMBER} \(target <= 4\.5, reversible\)")
    ratio(lines[-1], rf"MAP iteration / forward h = {NUMBER} \(target <= 4\.5, recompute\)")


@pytest.mark.slow
def test_tiny_vae_cost_quick_prints_both_latents_and_the_ratio():
    lines = run_bench("tiny_vae_cost.py", "--quick", "--threads", "1")
    assert any(line.startswith("8x (random tiny VAE)") and " 8x8 " in line for line in lines)
    assert any(line.startswith("4x (trained VAE's") and " 16x16 " in line for line in lines)
    ratio(lines[-1], rf"4x VAE / 8x VAE per MAP iteration = {NUMBER}")


def test_gpu_iteration_without_cuda_or_tiny_exits_with_code_2():
    import os

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_iteration.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},  # no GPU, even on a GPU machine
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "CUDA" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("bijection", ["edict", "belm"])
def test_edict_memory_quick_prints_table_and_ratios(bijection):
    lines = run_bench(
        "edict_memory.py", "--quick", "--threads", "1", "--jobs", "2", "--bijection", bijection
    )
    assert lines[0].startswith(f"{bijection}: peak memory")
    for method in ("recompute", "reversible", "autograd"):
        row = [line for line in lines if re.match(rf"{method} +{NUMBER} ", line)]
        assert len(row) == 1, lines
        peaks = [float(value) for value in row[0].split()[1:3]]  # MiB at T=3 and T=5
        assert all(peak > 0 for peak in peaks), row
    label = r"peak\(T=5\)/peak\(T=3\)"
    ratio(
        next(line for line in lines if line.startswith("autograd peak")),
        rf"autograd {label} = {NUMBER} \(needs >= 0\.83\)",
    )
    ratio(lines[-2], rf"ours \(reversible\) {label} = {NUMBER} \(target <= 1\.25\)")
    ratio(lines[-1], rf"ours {label} = {NUMBER} \(target <= 1\.25\)")


#: the network precisions bench/edict_roundtrip.py prints a row for, in order
ROUND_TRIP_ROWS = (
    "float64",
    "float32",
    "bf16-autocast",
    "bf16-weights",
    "fp16-autocast",
    "tf32-emulated",
)


@pytest.mark.slow
def test_edict_roundtrip_reports_exact_inversion():
    lines = run_bench("edict_roundtrip.py", "--steps", "4", "--threads", "1")
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[2:]}
    assert set(rows) == {(d, o) for d in ROUND_TRIP_ROWS for o in ("alternating", "fixed")}
    bounds = {
        "float64": 1e-10,
        "float32": 1e-3,
        "bf16-autocast": 1.0,
        "bf16-weights": 1.0,
        "fp16-autocast": 1.0,
        "tf32-emulated": 1.0,
    }
    for (dtype, _), errors in rows.items():
        assert all(float(e) <= bounds[dtype] for e in errors), rows

    def worst(name):
        return max(float(e) for (d, _), errors in rows.items() if d == name for e in errors)

    assert worst("tf32-emulated") > 3 * worst("float32"), rows  # TF32's 10-bit inputs


@pytest.mark.slow
def test_vae_decode_memory_compares_both_settings_with_the_same_gradient():
    lines = run_bench("vae_decode_memory.py", "--size", "64")
    norms = [line.split()[-1] for line in lines if line.startswith("checkpointing")]
    assert len(norms) == 2 and float(norms[0]) == pytest.approx(float(norms[1]), rel=1e-5)
    ratio(lines[-1].split(",")[0], rf"checkpointed / plain: memory {NUMBER}")


def test_seesr_unet_vs_sd2_counts_the_tensors_that_differ(tmp_path):
    import shutil

    import torch
    from helpers import write_tiny_sd2_folder
    from safetensors.torch import load_file, save_file

    (tmp_path / "sd2").mkdir()
    write_tiny_sd2_folder(tmp_path / "sd2")
    unet = tmp_path / "seesr" / "unet"
    shutil.copytree(tmp_path / "sd2" / "unet", unet)
    shutil.copytree(tmp_path / "sd2" / "controlnet", unet.parent / "controlnet")  # not read
    state = load_file(unet / "diffusion_pytorch_model.safetensors")
    state["mid_block.image_attentions.0.proj_out.weight"] = torch.ones(2)
    save_file(state, unet / "diffusion_pytorch_model.safetensors")
    argv = ["--sd2", str(tmp_path / "sd2"), "--seesr", str(tmp_path / "seesr")]
    argv += ["--cache", str(tmp_path / "cache")]
    lines = run_bench("seesr_unet_vs_sd2.py", *argv)
    total = len(state) - 1
    assert lines[-1] == f"0 of {total} tensors differ"
    state["conv_out.bias"] = state["conv_out.bias"] + 1e-3
    save_file(state, unet / "diffusion_pytorch_model.safetensors")
    argv[-1] = str(tmp_path / "another-cache")  # the first recorded the file's sha256
    lines = run_bench("seesr_unet_vs_sd2.py", *argv)
    assert lines[-1] == f"1 of {total} tensors differ"
    assert any(re.fullmatch(r"conv_out\s+0\.001\s+1\s+2", line) for line in lines), lines


def test_priors_bench_quick_prints_one_row_per_prior_with_its_licence():
    names = ("niqe", "musiq", "pyiqa:cnniqa")
    lines = run_bench("priors.py", "--quick", "--threads", "1", "--priors", *names)
    rows = [line for line in lines if line.split() and line.split()[0] in names]
    assert len(rows) == 3, lines
    for row in rows:
        params, seconds, peak, licence = row.split()[1:5]
        assert params.endswith("M") and float(seconds) > 0 and float(peak) >= 0
        assert licence.startswith("PolyForm-Noncommercial"), row


@pytest.mark.slow
def test_rank_bench_prints_the_fit_ratio_and_the_bootstrap_time():
    fit, command = run_bench("rank.py", "--resamples", "20")
    ratio(fit.split("(")[1].split(")")[0], NUMBER + "x")
    assert command.startswith("dlmap rank, 20 resamples, 9 conditions, 25 subjects")


@pytest.mark.slow
def test_coverage_bench_prints_coverage_with_its_monte_carlo_error():
    lines = run_bench("coverage.py", "--experiments", "8", "--resamples", "20")
    assert len(lines) == 6 and lines[0].startswith("8 experiments x 20 resamples")
    match = re.search(r"coverage ([0-9.]+) \+- ([0-9.]+) \(nominal 0.95\)", lines[-1])
    assert match and 0 <= float(match.group(1)) <= 1 and float(match.group(2)) >= 0


@pytest.mark.slow
def test_niqe_models_bench_prints_per_content_srcc_with_intervals(tmp_path):
    lines = run_bench(
        "niqe_models.py",
        "--contents",
        "chelsea,brick",
        "--size",
        "192",
        "--resamples",
        "50",
        "--cache",
        str(tmp_path),
    )
    assert lines[0].startswith("LIVE's model left out") and "dlmap weights fetch niqe" in lines[0]
    assert lines[1].startswith("NIQE per-content SRCC") and "2 photographs at 192 px" in lines[1]
    assert lines[2].split() == ["distortion", "old", "fallback", "new", "fallback"]
    cell = r"(-?[0-9.]+) \[(-?[0-9.]+), (-?[0-9.]+)\] \((-?[0-9.]+|nan)\)"
    for kind, line in zip(("blur", "noise", "jpeg"), lines[3:6], strict=True):
        cells = re.findall(cell, line)
        assert line.startswith(kind) and len(cells) == 2, line
        for mean, low, high, _ in cells:
            assert -1 <= float(low) <= float(mean) <= float(high) <= 1


def test_the_full_size_rehearsal_runs_the_default_path_from_released_files(tmp_path):
    """bench/full_size.py --reduced: the released layouts written (toy UNet, VAE and text
    encoder; RAM's Swin-L at full size), the default backbone loaded from them by the CLI,
    the staged run and the workflow's two jobs; every record says its weights are random."""
    work = tmp_path / "work"
    lines = run_bench(
        "full_size.py", "--reduced", "--size", "128", "--work", str(work), timeout=600
    )
    text = "\n".join(lines)
    assert "switches: --weights-dtype=same" in text, text
    for process in (
        "write random weights",
        "dlmap weights check --backbone sd2-seesr",
        "stages in one process",
        "dlmap enhance (default backbone)",
        "workflow invert_chunk + enhance_chunk",
    ):
        assert any(line.startswith(process) for line in lines), text
    for stage in (
        "load RAM Swin-L + DAPE",
        "load seesr/unet (UNet2DConditionModel)",
        "load seesr/controlnet (SeeSRControlNetModel)",
        "inversion (T = 2)",
        "MAP (1 iteration, T = 2)",
        "invert_chunk",
        "enhance_chunk",
    ):
        assert any(line.startswith(stage) for line in lines), (stage, text)
    swin = next(line for line in lines if line.startswith("swin-l "))
    assert 190 < float(swin.split()[1]) < 200, swin  # RAM's Swin-L: about 196 M parameters
    outputs = [*work.glob("out/**/astronaut.json")]
    assert len(outputs) == 3, outputs  # the staged run, the CLI, the workflow job
    for path in outputs:
        record = json.loads(path.read_text())
        assert record["reduced"] and "RANDOM WEIGHTS" in record["random_weights"], path
        assert set(record["weights"]) == {"sd2-base", "seesr", "ram-swin-large", "dape"}


def test_bijection_time_quick_prints_each_ratio_to_edict():
    lines = run_bench("bijection_time.py", "--quick", "--threads", "1")
    names = ("bdia", "belm", "leapfrog", "leapfrog-int")
    for name, line in zip(names, lines[-4:], strict=True):
        ratio(line, rf"MAP iteration {name} / EDICT = {NUMBER} \(target <= 0\.6, recompute\)")


@pytest.mark.slow
def test_edict_roundtrip_prints_exact_zeros_for_the_integer_leapfrog():
    lines = run_bench(
        "edict_roundtrip.py", "--steps", "4", "--threads", "1", "--bijection", "leapfrog-int"
    )
    rows = [line.split() for line in lines[2:]]
    assert tuple(row[0] for row in rows) == ROUND_TRIP_ROWS
    assert all(row[2:] == ["0.00e+00", "0.00e+00"] for row in rows), lines


def test_bijection_tradeoffs_prints_the_table_and_obelm_beats_ddim():
    lines = run_bench("bijection_tradeoffs.py", "--steps", "6")
    rows = {
        line.split()[0] + (line.split()[1] if line.startswith("bdia") else ""): line.split()
        for line in lines
        if line.startswith(("bdia", "o-belm", "ddim")) and "ends=" not in line
    }
    assert {"bdiagamma=0.92", "o-belm", "ddim"} <= set(rows), lines
    obelm, ddim = rows["o-belm"], rows["ddim"]
    assert float(obelm[-1]) < float(ddim[-1])  # T = 50: the second-order rule is closer
    assert float(obelm[1]) > 1 and float(rows["bdiagamma=1.0"][2]) > 1  # amplifications
    # a move of s_1 alone is damped less as gamma grows (the parasitic mode)
    gains = [float(rows["bdiagamma=1.0"][4]), float(rows["bdiagamma=0.92"][5])]
    assert gains[0] > gains[1] > float(rows["bdiagamma=0.5"][4]), lines
    ends = [line.split() for line in lines if "ends=" in line]
    assert [row[1] for row in ends] == ["ends=final-alpha", "ends=alpha-one"] * 2, lines
    leapfrog = next(line.split() for line in lines if line.startswith("leapfrog "))
    assert float(leapfrog[1]) == 1  # A_k = 1: the inverse amplifies nothing
    kicks = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("kick ")}
    # the leapfrog's parasitic mode is undamped: a kick to s_1 grows, O-BELM's shrinks
    assert float(kicks["leapfrog"][1]) > 1 > float(kicks["o-belm"][1]), lines


def test_bijection_reference_prints_differences_at_round_off():
    lines = run_bench("bijection_reference.py", timeout=600)
    rows = [line.split() for line in lines if line.startswith(("belm", "bdia"))]
    assert len(rows) == 16, lines  # 4 schedules x 2 noise predictors x T = 10, 20
    for row in rows:
        assert float(row[5]) <= 1e-11 and float(row[6]) <= 1e-11, row  # sampling, inversion


def test_flops_prints_the_paper_iteration_and_inversion():
    lines = run_bench("flops.py")
    edict = next(line.split() for line in lines if line.startswith("edict"))
    assert float(edict[1]) == pytest.approx(171.1, rel=0.01), lines
    assert float(edict[2]) == pytest.approx(51.2, rel=0.01), lines
    a100 = next(line.split() for line in lines if line.startswith("A100 80GB   float32"))
    assert float(a100[-2]) == pytest.approx(11.0, abs=0.05), a100  # config.yaml's estimate


def test_msliqe_training_prints_a_held_out_srcc_per_variant_and_seed():
    lines = run_bench(
        "msliqe_training.py",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--variants",
        "default",
        "earlier",
        timeout=600,
    )
    for variant in ("default", "earlier"):
        line = next(x for x in lines if x.startswith(f"{variant} seed 0: held-out SRCC"))
        assert -1 <= float(line.split()[5]) <= 1, line
