"""A full-size rehearsal of the paper's default path, from files, with RANDOM weights.

Writes random weights for every set the default backbone (``sd2-seesr``) and a full-size
prior (MS-LIQE, CLIP ViT-B/32) need, in their released layouts and names
(``dlmap.testing.released``), into a cache of its own, each folder stamped
``RANDOM-WEIGHTS.txt`` (so every record made from them says it is a random-weight rehearsal),
then runs the real default path on one 512 x 512 photograph:

1. ``dlmap weights check --backbone sd2-seesr`` (all present, checksums recorded);
2. the stages one by one in one process: loading each network, the RAM/DAPE embedding, the
   EDICT inversion, one MAP iteration, writing the outputs;
3. ``dlmap enhance`` with the default backbone from that cache;
4. the workflow's ``invert_chunk`` and ``enhance_chunk`` jobs on a one-image chunk.

Each step runs in its own process; the script prints the time of each stage, the peak
resident memory of each process, the parameter count of each network next to the published
one, and the dtype each network ran in.

    python bench/full_size.py                  # full size on this CPU: about 15-30 min, 15 GB
    python bench/full_size.py --reduced        # toy UNet/VAE/text encoder, real Swin-L: ~1 min
    python bench/full_size.py --device cuda --steps 20 --iters 3
    python bench/full_size.py --device cuda --steps 20 --iters 3 --autocast bf16 \
        --weights-dtype bf16 --checkpoint-blocks --vae-slicing     # the 24 GB setting

``--work DIR`` keeps the cache there (removed afterwards unless ``--keep``). ``--reduced`` is
what ``tests/test_bench.py`` runs: the same code with toy networks (the Swin-L stays full
size, since the ControlNet's image attention reads RAM's 512-wide embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
DLMAP = str(Path(sys.executable).with_name("dlmap"))
GIB = 2**30


def _params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def write_weights(cache: Path, reduced: bool, seed: int = 0) -> dict:
    """Random weights in the released layouts under ``cache``; returns parameter counts."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dlmap.diffusion import dape, tiny
    from dlmap.diffusion.seesr import SeeSRControlNetModel
    from dlmap.msliqe.model import MSLIQE, TINY_CLIP, MSLIQEConfig, default_checkpoint
    from dlmap.testing import released

    torch.manual_seed(seed)
    if reduced:
        unet = UNet2DConditionModel(**tiny.TINY_UNET)
        vae = AutoencoderKL(**tiny.TINY_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny.TINY_TEXT_ENCODER))
        vocab, merges = released.toy_tokenizer_files()
    else:
        unet = UNet2DConditionModel(**released.SD2_UNET)
        vae = AutoencoderKL(**released.SD2_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**released.SD2_TEXT_ENCODER))
        vocab, merges = released.clip_bpe_tokenizer_files()
    counts = {"unet": _params(unet), "vae": _params(vae), "text_encoder": _params(text_encoder)}
    what = "bench/full_size.py" + (" --reduced" if reduced else "")
    released.write_sd2_folder(cache / "sd2-base", unet, vae, text_encoder, vocab, merges)
    del vae, text_encoder
    controlnet = SeeSRControlNetModel.from_unet(unet, image_cross_attention_dim=512)
    embedder = dape.ImageEmbedder(dape.DAPE_SWIN_L)
    counts.update(controlnet=_params(controlnet), **{"swin-l": _params(embedder)})
    staging = cache / "released"
    released.write_seesr_files(
        staging, unet, controlnet, embedder, seed, keep_embedding_width=False
    )
    del unet, controlnet, embedder
    for source, target in (("seesr", "seesr"), ("ram", "ram-swin-large"), ("dape", "dape")):
        os.replace(staging / source, cache / target)
    staging.rmdir()
    for name in ("sd2-base", "seesr", "ram-swin-large", "dape"):
        released.mark(cache / name, what)

    config = MSLIQEConfig(clip=TINY_CLIP) if reduced else MSLIQEConfig()
    model = MSLIQE.from_config(config)
    counts["ms-liqe"] = _params(model)
    checkpoint = default_checkpoint(cache)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    state = {"state_dict": model.clip.state_dict()}
    if reduced:
        state["config"] = json.loads(json.dumps(asdict(config)))
    torch.save(state, checkpoint)
    released.mark(checkpoint.parent, what)
    return counts


def run_stages(cache: Path, image: Path, out: Path, args) -> dict:
    """The default path's stages in this process, each timed."""
    from dlmap.diffusion import build, dape
    from dlmap.enhance import records, solver
    from dlmap.images import load_image
    from dlmap.inversion.config import InversionConfig
    from dlmap.priors.registry import create_prior
    from dlmap.settings import BackboneSettings, SolverConfig

    times: dict[str, float] = {}

    def timed(label, function):
        def wrapper(*a, **k):
            began = time.perf_counter()
            result = function(*a, **k)
            key = label(*a, **k)
            times[key] = times.get(key, 0.0) + time.perf_counter() - began
            return result

        return wrapper

    def network(cls, folder, sub=None, **kwargs):
        return f"load {Path(folder).name}/{sub or ''} ({cls.__name__})"

    build.load_strict = timed(network, build.load_strict)
    build.encode_empty_prompt = timed(
        lambda *a: "load text encoder + empty prompt", build.encode_empty_prompt
    )
    dape.load_image_embedder = timed(
        lambda *a, **k: "load RAM Swin-L + DAPE", dape.load_image_embedder
    )
    began = time.perf_counter()
    settings = BackboneSettings(
        name="sd2-seesr",
        cache=str(cache),
        device=args.device,
        dtype=args.dtype,
        autocast=args.autocast,
        weights_dtype=args.weights_dtype,
        checkpoint_blocks=args.checkpoint_blocks,
        vae_slicing=args.vae_slicing,
    )
    backbone = build.load_backbone(settings)
    times["load backbone (total)"] = time.perf_counter() - began
    prior = create_prior("ms-liqe", cache=cache).to(args.device)
    batch = load_image(image, size=args.size).unsqueeze(0).to(args.device)
    edict_config = InversionConfig(steps=args.steps)
    began = time.perf_counter()
    with torch.no_grad():
        condition = backbone.condition(batch)
    times["RAM/DAPE embedding + condition"] = time.perf_counter() - began
    began = time.perf_counter()
    pair = solver.invert_images(backbone, batch, edict_config, [0], condition)
    times[f"inversion (T = {args.steps})"] = time.perf_counter() - began
    config = SolverConfig(iters=args.iters, early_stop=False)
    began = time.perf_counter()
    result = solver.map_solve(
        backbone, prior, batch, config, edict_config, seeds=[0], quiet=True, inversion=pair
    )
    times[f"MAP ({args.iters} iteration, T = {args.steps})"] = time.perf_counter() - began
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    record = records.write_enhanced(out, image, 0, result, prior, backbone, 0.0, {})
    times["write outputs"] = time.perf_counter() - began
    networks = {
        "unet": backbone.unet,
        "vae": backbone.vae,
        "controlnet": backbone.controlnet,
        "swin-l": backbone.image_embedder,
        "ms-liqe": prior,
    }
    return {
        "times": times,
        "dtypes": {
            **{name: str(next(net.parameters()).dtype) for name, net in networks.items()},
            "text_encoder": "(empty-prompt embedding only)",
        },
        "autocast": str(backbone.autocast_dtype),
        "random_weights": record.get("random_weights"),
        "reduced": record["reduced"],
    }


def run_jobs(cache: Path, image: Path, out: Path, args) -> dict:
    """The workflow's invert_chunk and enhance_chunk on a one-image chunk."""
    from dlmap.priors.registry import create_prior
    from dlmap.settings import RunSettings
    from dlmap.workflow import jobs

    backbone = {
        "name": "sd2-seesr",
        "device": args.device,
        "dtype": args.dtype,
        "autocast": args.autocast,
        "cache": str(cache),
        "weights_dtype": args.weights_dtype,
    }
    memory = {"checkpoint_blocks": args.checkpoint_blocks, "vae_slicing": args.vae_slicing}
    solver = {"iters": args.iters, "early_stop": False}
    settings = RunSettings.from_job_params(
        backbone, solver, {"steps": args.steps}, args.size, memory
    )
    times = {}
    began = time.perf_counter()
    jobs.invert_chunk([image], settings, 0, out / "c000.pt", 1)
    times["invert_chunk"] = time.perf_counter() - began
    prior = create_prior("ms-liqe", cache=cache)
    began = time.perf_counter()
    jobs.enhance_chunk(
        [image], out / "enhanced", prior, settings, inversion=out / "c000.pt", batch_size=1
    )
    times["enhance_chunk"] = time.perf_counter() - began
    return {"times": times}


def child(step: str, argv: list[str]) -> tuple[dict, float, float]:
    """Run ``step`` of this script (or a dlmap command) in its own process: its result, wall
    seconds and peak resident memory (GiB, from the kernel's accounting of that process)."""
    command = argv if step == "command" else [sys.executable, str(HERE), "--step", step, *argv]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {os.waitstatus_to_exitcode(status)})")
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1].removeprefix("RESULT ")) if lines else {"stdout": output}
    return result, seconds, usage.ru_maxrss * 1024 / GIB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reduced", action="store_true")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--iters", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--autocast", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--weights-dtype", default="same", choices=("same", "bf16"))
    parser.add_argument("--checkpoint-blocks", action="store_true")
    parser.add_argument("--vae-slicing", action="store_true")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="dlmap-full-size-"))
    cache, out = work / "cache", work / "out"
    image = work / "astronaut.png"
    if args.step is not None:  # one step, in this (child) process
        torch.set_num_threads(max(1, (os.cpu_count() or 1)))
        if args.step == "write":
            result = write_weights(cache, args.reduced)
        elif args.step == "stages":
            result = run_stages(cache, image, out / "stages", args)
        else:
            result = run_jobs(cache, image, out / "jobs", args)
        print("RESULT " + json.dumps(result))
        return 0

    from dlmap.data.demo_set import pristine
    from dlmap.images import save_png_atomic
    from dlmap.testing.released import PUBLISHED_PARAMS

    work.mkdir(parents=True, exist_ok=True)
    photo = torch.from_numpy(pristine("astronaut", args.size)).permute(2, 0, 1).float()
    save_png_atomic(photo / 255 if photo.max() > 1 else photo, image)
    passed = [
        f"--work={work}",
        f"--size={args.size}",
        f"--steps={args.steps}",
        f"--iters={args.iters}",
        f"--device={args.device}",
        f"--dtype={args.dtype}",
        f"--autocast={args.autocast}",
        *(["--reduced"] if args.reduced else []),
    ]
    switches = [
        f"--weights-dtype={args.weights_dtype}",
        *(["--checkpoint-blocks"] if args.checkpoint_blocks else []),
        *(["--vae-slicing"] if args.vae_slicing else []),
    ]
    passed += switches
    report = []
    try:
        counts, seconds, peak = child("write", passed)
        size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / GIB
        report.append(("write random weights", seconds, peak, f"{size:.1f} GiB of files"))
        check = [DLMAP, "weights", "check", "--backbone", "sd2-seesr", "--cache", str(cache)]
        _, seconds, peak = child("command", check)
        report.append(("dlmap weights check --backbone sd2-seesr", seconds, peak, "exit 0"))
        stages, seconds, peak = child("stages", passed)
        report.append(("stages in one process", seconds, peak, ""))
        enhance = [
            DLMAP,
            "enhance",
            str(image),
            "--out",
            str(out / "cli"),
            "--prior",
            "ms-liqe",
            "--cache",
            str(cache),
            "--size",
            str(args.size),
            "--steps",
            str(args.steps),
            "--iters",
            str(args.iters),
            "--no-early-stop",
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--autocast",
            args.autocast,
            "--quiet",
            *switches,
        ]
        _, seconds, peak = child("command", enhance)
        record = json.loads((out / "cli" / "astronaut.json").read_text())
        stamp = record.get("random_weights", "NOT STAMPED")
        report.append(("dlmap enhance (default backbone)", seconds, peak, f"stamped: {stamp}"))
        jobs, seconds, peak = child("jobs", passed)
        report.append(("workflow invert_chunk + enhance_chunk", seconds, peak, ""))
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    sizes = "REDUCED: toy UNet/VAE/text encoder" if args.reduced else "paper sizes"
    print(
        f"full-size rehearsal ({sizes}, random weights), {args.size} px, T = {args.steps}, "
        f"{args.iters} iteration(s), {args.device}, {args.dtype}, autocast {args.autocast}, "
        f"switches: {' '.join(switches)}"
    )
    print(f"{'process':<42} {'seconds':>8} {'peak RSS GiB':>13}  note")
    for name, seconds, peak, note in report:
        print(f"{name:<42} {seconds:8.1f} {peak:13.2f}  {note}")
    print(f"\n{'stage (one process)':<58} {'seconds':>8}")
    for name, seconds in {**stages["times"], **jobs["times"]}.items():
        print(f"{name:<58} {seconds:8.2f}")
    print(f"\n{'network':<14} {'params (M)':>11} {'published (M)':>14}  ran in")
    for name, count in counts.items():
        published = PUBLISHED_PARAMS.get(name)
        ran = stages["dtypes"].get(name, "-")
        published = f"{published:.1f}" if published and not args.reduced else "-"
        print(f"{name:<14} {count:11.1f} {published:>14}  {ran}")
    print(f"autocast: {stages['autocast']}; every record stamped: {stages['random_weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
