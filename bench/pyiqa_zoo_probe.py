"""Which of pyiqa's no-reference metrics build offline with random weights, and are differentiable.

    python bench/pyiqa_zoo_probe.py [--metrics a,b] [--out results/pyiqa-probe.json]
                                    [--timeout 240] [--memory-gib 18] [--threads 2]

Each metric of ``pyiqa.list_models(metric_mode="NR")`` is probed in a fresh subprocess (per-metric
timeout and memory cap, peak RSS from ``os.wait4``) under
``dlmap.testing.offline_pyiqa.offline_random_weights``: its real architecture, random weights,
nothing downloaded. The child builds ``create_metric(name, as_loss=True, loss_reduction="none")``
(under ``torch.no_grad``: LIQE encodes its prompts at build time and would keep their graph),
records pyiqa's metadata (``DEFAULT_CONFIGS``: metric_mode, lower_better, score_range, metric_opts
with the training set; the built network's crop/resize settings), freezes the weights as a prior
does, runs forward on a random (1, 3, 224, 224) image (other sizes if 224 fails; a copy, as some
metrics edit their input in place), back-propagates, times one forward + backward after that
warm-up (the median of 3 where that is fast), and checks the gradient against central finite
differences (FD) along 3 directions:

* float64 (every module, CLIPs hidden in lists included, ``.double()``) where the metric then
  computes in float64 and time allows: v ~ N(0, 1) per pixel, eps 1e-6, 1e-7 and 1e-8 (the
  next only while the error is above 1/100 of the tolerance); the best is kept. ReLU / max-pool
  kinks crossed by the perturbation make the error of a correct gradient grow ~linearly with
  eps (ResNet-50: ~1e-2 at eps 1e-4, ~1e-3 at 1e-6, ~1e-6 at 1e-8), rounding (~1e-16 / eps) as
  it shrinks.
* else float32 (OpenAI's CLIP casts to float32 in its LayerNorm): v = the gradient's direction
  scaled to N(0, 1)'s norm, plus v ~ N(0, 1), so that the directional derivative (~sqrt(pixels)
  larger than a random one's) beats rounding; eps 1e-3, then 1e-2 (likewise).

Classes (the policy is ``dlmap.priors.pyiqa_nr.classify``; this script only measures):

* ``differentiable``: builds offline, gradient finite and not all zero, and FD agrees on every
  direction: relative error < 1e-3 in float64 (a correct gradient gets ~1e-5 at the best eps; a
  detached or wrong term gives O(1) errors), < 5e-2 in float32 (rounding ~1e-7 of the score / eps
  over a derivative that can be ~1e-2 of the score).
* ``not differentiable``: builds and runs, but no gradient, a zero or non-finite one, or FD
  disagrees (the reason says which).
* ``not a prior``: distribution metrics (FID, sFID, FID-DINOv2, Inception Score)
  and CLIPScore (needs a caption); built only.
* ``not checked offline``: a download or data file random weights cannot replace, a 7B-class
  language model from Hugging Face (Q-Align, Q-ReAlign: not even launched), a build that fails
  here, or the time / memory cap.

With ``--metrics`` the entries of an existing ``--out`` file are updated in place.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlmap.priors.pyiqa_nr import (
    FD_TOLERANCE,
    NOT_LAUNCHED,
    NOT_PRIORS,
    NOTES,
    classify,
    pyiqa_own,
)
from dlmap.testing.offline_pyiqa import modules_of

GIB = 2**30
PROTOCOL_WORDS = (
    "crop",
    "size",
    "patch",
    "sample",
    "dataset",
    "scale",
    "resize",
    "step",
    "backbone",
    "model_name",
    "pretrained",
    "version",
    "channel",
)
BUILD_KEYS = ("builds", "build_s", "build_error", "params", "files", "min_side", "net_class")
EPS = {"float64": (1e-6, 1e-7, 1e-8), "float32": (1e-3, 1e-2)}  # in turn; the best counts


def seed_all(seed: int = 0) -> None:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def first_line(error: BaseException) -> str:
    """The error's first line, and the offline block's where that is its cause (transformers)."""

    def line(e):
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0][:300] if text else ''}"

    cause = error.__cause__ or error.__context__
    while cause is not None:
        if type(cause).__name__ == "OfflineUnavailable":
            return f"{line(cause)} (raised as {type(error).__name__})"
        cause = cause.__cause__ or cause.__context__
    return line(error)


def count_parameters(metric) -> int:
    seen = {id(p): p.numel() for m in modules_of(metric) for p in m.parameters(recurse=False)}
    return sum(seen.values())


def protocol(net) -> dict:
    """The built network's simple settings whose names speak of crops, sizes or training data."""
    found = {}
    for key, value in vars(net).items():
        if key.startswith("_") or not any(word in key.lower() for word in PROTOCOL_WORDS):
            continue
        if isinstance(value, (bool, int, float, str, type(None))) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value)
        ):
            found[key] = value
    return found


def metadata(name: str) -> dict:
    """pyiqa's own record of a metric (InferenceModel's defaults where the table is silent)."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    config = DEFAULT_CONFIGS[name]
    return {
        "metric_mode": config.get("metric_mode"),
        "lower_better": config.get("lower_better", False),
        "score_range": config.get("score_range"),
        "metric_opts": config.get("metric_opts"),
    }


SIDES = (32, 64, 96, 128, 160, 192, 224)


def smallest_side(metric) -> int | None:
    """The smallest square side (of ``SIDES``) the metric scores without an error, or None."""
    import torch

    for side in SIDES:
        try:
            with torch.no_grad():
                metric(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
        except Exception:  # noqa: BLE001 - too small for this model: try the next side
            continue
        return side
    return None


def child(name: str, result_path: str, timeout: float, threads: int, build_only=False) -> None:
    import torch

    start = time.monotonic()
    deadline = start + timeout - 10
    torch.set_num_threads(threads)
    record: dict = {"metric": name}

    def save():
        Path(result_path).write_text(json.dumps(record, indent=1, default=str))

    from dlmap.testing.offline_pyiqa import offline_random_weights

    record["pyiqa"] = metadata(name)
    save()
    with offline_random_weights(seed=0) as block:
        import pyiqa

        t0 = time.monotonic()
        try:
            with torch.no_grad():  # building needs no autograd (LIQE encodes prompts then)
                metric = pyiqa.create_metric(
                    name, as_loss=True, loss_reduction="none", device="cpu"
                )
        except BaseException as error:  # noqa: BLE001 - every failure is a finding
            record.update(builds=False, build_error=first_line(error))
            save()
            return
        record.update(builds=True, build_s=round(time.monotonic() - t0, 2))
        record["net_class"] = type(metric.net).__name__
        record["protocol"] = protocol(metric.net)
        record["params"] = count_parameters(metric)
        record["files"] = list(block.requested)
        save()
        if name in NOT_PRIORS:
            return
        record["min_side"] = smallest_side(metric)
        save()
        if build_only:
            return
        for module in modules_of(metric):  # a prior differentiates the image, not the weights
            module.requires_grad_(False)
            for key, value in list(vars(module).items()):  # e.g. LIQE's text features
                if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                    setattr(module, key, value.detach())
                    record.setdefault("detached_at_build", []).append(
                        f"{type(module).__name__}.{key}"
                    )
        metric.eval()

        def evaluate(x):  # a copy: a prior's input is a decoder's output, and some edit theirs
            seed_all(0)
            copy = x.clone()
            out = metric(copy)
            if not torch.equal(copy.detach(), x.detach()):
                record["edits_input_in_place"] = True
            return out[0] if isinstance(out, (tuple, list)) else out

        sizes = [224] + [s for s in (384, 512) if s != 224]
        test_size = record["protocol"].get("test_img_size")
        if isinstance(test_size, int) and test_size not in (224, 384, 512):
            sizes.insert(1, test_size)
        errors = {}
        for size in sizes:
            seed_all(1)
            image = (0.05 + 0.9 * torch.rand(1, 3, size, size)).requires_grad_(True)
            t0 = time.monotonic()
            try:
                out = evaluate(image)
            except BaseException as error:  # noqa: BLE001
                errors[size] = first_line(error)
                try:
                    with torch.no_grad():
                        evaluate(image.detach())
                    errors[size] += " (forward without autograd works)"
                    record["forward_ok_without_grad"] = True
                except BaseException:  # noqa: BLE001
                    pass
                continue
            record.update(size=size, forward_ok=True, forward_s=round(time.monotonic() - t0, 3))
            break
        record["forward_errors"] = errors
        if not record.get("forward_ok"):
            record["forward_ok"] = False
            save()
            return
        record["output_shape"] = list(out.shape)
        record["output"] = [float(v) for v in out.detach().flatten()[:4]]
        record["finite"] = bool(torch.isfinite(out).all())
        record["requires_grad"] = bool(out.requires_grad)
        save()
        if not out.requires_grad:
            record["grad"] = "output has no grad_fn (computed outside autograd or detached)"
            save()
            return
        t0 = time.monotonic()
        try:
            out.sum().backward()
        except BaseException as error:  # noqa: BLE001
            record["grad"] = f"backward failed: {first_line(error)}"
            save()
            return
        first = time.monotonic() - t0 + record["forward_s"]
        grad = image.grad
        if grad is None:
            record["grad"] = "None (the input is not on the graph)"
            save()
            return
        record["grad_finite"] = bool(torch.isfinite(grad).all())
        record["grad_nonzero_fraction"] = float((grad != 0).float().mean())
        record["grad_norm"] = float(grad.norm())
        save()
        # timed forward + backward after that warm-up, if it leaves time for the FD check (the
        # median of 3 where they take under 2 s in all)
        times = []
        while len(times) < 3 and sum(times) < 2 and first < (deadline - time.monotonic()) / 3:
            x = image.detach().clone().requires_grad_(True)
            t0 = time.monotonic()
            try:
                evaluate(x).sum().backward()
            except BaseException as error:  # noqa: BLE001
                record["grad"] = f"a second forward + backward fails: {first_line(error)}"
                save()
                return
            times.append(round(time.monotonic() - t0, 3))
        if times:
            record.update(fwd_bwd_s=sorted(times)[len(times) // 2], fwd_bwd_runs=times)
            record["fwd_bwd_timed"] = "after warm-up" + (", median" if len(times) > 1 else "")
        else:
            record.update(fwd_bwd_s=round(first, 3), fwd_bwd_timed="first run (no time for two)")
        save()
        if not (record["grad_finite"] and record["grad_nonzero_fraction"] > 0):
            return
        finite_differences(record, metric, evaluate, image.detach(), grad, deadline, save)


def finite_differences(record, metric, evaluate, image, grad, deadline, save) -> None:
    """Central differences along 3 random directions, float64 where possible (see module doc)."""
    import torch

    seed_all(2)
    directions = [torch.randn_like(image) for _ in range(3)]
    fwd = record["forward_s"]
    record["fd"] = fd = {"dtype": None, "rel_err": [], "note": ""}
    # float64 costs ~2.5x: one forward + backward (~3 forwards) and 6 forwards, ~23 float32 ones
    dtype = "float64" if time.monotonic() + 23 * fwd < deadline else "float32"
    if os.environ.get("PROBE_FD_FLOAT32"):  # --fd-float32: models whose float64 copy won't fit
        dtype = "float32"
    if dtype == "float64":
        try:
            for module in modules_of(metric):
                module.double()
            x64 = image.double().requires_grad_(True)
            t0 = time.monotonic()
            out = evaluate(x64)
            fwd64 = time.monotonic() - t0
            if out.dtype != torch.float64:
                raise TypeError(f"output is {out.dtype} (computes in float32 inside)")
            out.sum().backward()
            grad, image = x64.grad, image.double()
            fwd = fwd64
        except BaseException as error:  # noqa: BLE001
            fd["note"] = f"float64 failed: {first_line(error)}; "
            for module in modules_of(metric):
                module.float()
            dtype = "float32"
    fd["dtype"], fd["tried"] = dtype, []
    if dtype == "float32":  # along the gradient (+ noise): a derivative ~sqrt(pixels) larger
        along = grad / grad.norm() * grad.numel() ** 0.5
        directions = [along + v for v in directions]
    fd["directions_kind"] = "random" if dtype == "float64" else "gradient + random"
    with torch.no_grad():
        for k, v in enumerate(directions):
            v, tried = v.to(image.dtype), {}
            analytic = float((grad * v).sum())
            for eps in EPS[dtype]:
                if time.monotonic() + 2.2 * fwd > deadline:
                    fd["note"] += "time ran out; "
                    break
                plus = evaluate(image + eps * v).sum().item()
                minus = evaluate(image - eps * v).sum().item()
                numeric = (plus - minus) / (2 * eps)
                scale = max(abs(numeric), abs(analytic))
                tried[eps] = abs(numeric - analytic) / scale if scale > 1e-12 else 0.0
                fd["tried"].append(
                    {
                        "direction": k,
                        "eps": eps,
                        "numeric": numeric,
                        "analytic": analytic,
                        "rel_err": tried[eps],
                    }
                )
                save()
                if tried[eps] < FD_TOLERANCE[dtype] / 100:  # clearly agrees: the next eps can wait
                    break
            if not tried:
                break
            fd["rel_err"].append(min(tried.values()))
    fd["directions"] = len(fd["rel_err"])
    save()


def probe(name, timeout, memory_gib, threads, folder: Path, build_only=False) -> dict:
    if name in NOT_LAUNCHED:
        return {"metric": name, "launched": False, "pyiqa": metadata(name)}
    result = folder / f"{name.replace('/', '_')}.json"
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--result",
        str(result),
        "--timeout",
        str(timeout),
        "--threads",
        str(threads),
        *(["--build-only"] if build_only else []),
    ]
    started = time.monotonic()
    log = folder / f"{name.replace('/', '_')}.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    killed, peak, status, usage = None, 0, None, None
    while status is None:
        pid, code, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            status, usage = code, rusage
            break
        try:
            rss = int(Path(f"/proc/{process.pid}/status").read_text().split("VmRSS:")[1].split()[0])
            peak = max(peak, rss * 1024)
        except (OSError, IndexError, ValueError):
            pass
        if killed is None and time.monotonic() - started > timeout:
            killed = f"exceeded the {timeout:.0f} s time limit"
        if killed is None and peak > memory_gib * GIB:
            killed = f"exceeded the {memory_gib:g} GiB memory cap"
        if killed:
            os.killpg(process.pid, signal.SIGKILL)
            _, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = log.read_text(errors="replace")
    record = json.loads(result.read_text()) if result.exists() else {"metric": name}
    record["wall_s"] = round(time.monotonic() - started, 1)
    record["peak_rss_gib"] = round(max(peak, usage.ru_maxrss * 1024) / GIB, 2)
    if killed:
        record["killed"] = killed
    elif process.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        record["crash"] = f"exit {process.returncode}: {lines[-1][:300] if lines else ''}"
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics", help="comma-separated subset (default: every NR metric)")
    parser.add_argument("--out", default="results/pyiqa-probe.json")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per metric")
    parser.add_argument("--memory-gib", type=float, default=18.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="build, record files, parameters and the smallest side; keep earlier classes",
    )
    parser.add_argument(
        "--fd-float32",
        action="store_true",
        help="finite differences in float32 only (for models whose float64 copy does not fit)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fd_float32:
        os.environ["PROBE_FD_FLOAT32"] = "1"  # read by the children
    if args.child:
        return child(args.child, args.result, args.timeout, args.threads, args.build_only)

    import tempfile

    import pyiqa

    every = pyiqa_own(pyiqa.list_models(metric_mode="NR"))
    names = args.metrics.split(",") if args.metrics else every
    unknown = [n for n in names if n not in every]
    if unknown:
        sys.exit(f"not NR metrics of pyiqa {pyiqa.__version__}: {', '.join(unknown)}")
    out = Path(args.out)
    reuse = (args.metrics or args.build_only) and out.exists()
    previous = json.loads(out.read_text())["metrics"] if reuse else {}
    results = dict(previous)
    with tempfile.TemporaryDirectory(prefix="pyiqa-probe-") as folder:
        for name in names:
            record = probe(
                name, args.timeout, args.memory_gib, args.threads, Path(folder), args.build_only
            )
            if args.build_only and name in previous:  # the earlier probe's class and checks
                record = {**previous[name], **{k: record[k] for k in BUILD_KEYS if k in record}}
            else:
                record["class"], record["reason"] = classify(record)
            if name in NOTES:
                record["note"] = NOTES[name]
            results[name] = record
            print(f"{name:22} {record['class']:27} {record['reason'][:110]}", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            ordered = {n: results[n] for n in every if n in results}
            out.write_text(json.dumps({"pyiqa": pyiqa.__version__, "metrics": ordered}, indent=1))
    print_table(ordered)


def print_table(results: dict) -> None:
    def number(value, fmt):
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    print(
        f"\n{'metric':22} {'class':27} {'params':>8} {'fb s':>7} {'GiB':>5} "
        f"{'lower':>5} {'range':12} reason"
    )
    counts: dict[str, int] = {}
    for name, r in results.items():
        counts[r["class"]] = counts.get(r["class"], 0) + 1
        params = r.get("params")
        shown = f"{params / 1e6:.1f}M" if isinstance(params, int) else "-"
        meta = r.get("pyiqa", {})
        note = f" [{r['note']}]" if r.get("note") else ""
        print(
            f"{name:22} {r['class']:27} {shown:>8} {number(r.get('fwd_bwd_s'), '.2f'):>7} "
            f"{number(r.get('peak_rss_gib'), '.2f'):>5} {str(meta.get('lower_better', '-')):>5} "
            f"{str(meta.get('score_range', '-')):12} {r['reason'][:90]}{note}"
        )
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
