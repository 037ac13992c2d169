"""MS-LIQE's training recipe on the offline synthetic IQA set: held-out SRCC over seeds.

A tiny random CLIP (64-pixel views of 8-pixel patches) is trained from scratch (lr 1e-3;
5e-6 is for fine-tuning OpenAI's CLIP) on 96-pixel images of the synthetic set, so that a
64-pixel view has several positions to be drawn from, and scored on the test split's
photographs, which it never saw, with the deterministic views.

    python bench/msliqe_training.py [--seeds 0 1 2] [--epochs 12] [--variants ...]

Variants: ``default`` (the paper's and LIQE's recipe: random views of the pyramid, a learned
temperature, LIQE's per-epoch cosine), each with one choice set back to dlmap's earlier one
(``fixed-views``, ``frozen-tau``, ``single-cosine``), and ``earlier`` (all three back). The
synthetic set is one data set, so LIQE's sub-batch proportions do not show here. Prints one
line per variant and seed, ``VARIANT seed S: held-out SRCC X.XXX (N s)``, and each mean.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = {
    "default": {},
    "fixed-views": {"random_crops": False},
    "frozen-tau": {"learn_temperature": False},
    "single-cosine": {"lr_schedule": "single"},
    "earlier": {"random_crops": False, "learn_temperature": False, "lr_schedule": "single"},
}


def main() -> None:
    from dlmap.data import manifests, synthetic_iqa
    from dlmap.msliqe import model as msliqe
    from dlmap.msliqe import train as msliqe_train
    from dlmap.priors.evaluation import correlations

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["default"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vision = dict(msliqe.TINY_CLIP["vision_cfg"], image_size=64, patch_size=8)
    clip = dict(msliqe.TINY_CLIP, vision_cfg=vision)
    model = msliqe.MSLIQEConfig(clip=clip, crop=64, scales=(1.0, 0.75), crops_per_scale=2)
    with tempfile.TemporaryDirectory() as folder:
        manifest = synthetic_iqa.make_synthetic_set(Path(folder) / "set", size=96, tiles=3)
        held_out = [e for e in manifests.read_manifest_resolved(manifest) if e.split == "test"]
        for variant in args.variants:
            results = []
            for seed in args.seeds:
                config = msliqe_train.TrainConfig(
                    epochs=args.epochs,
                    seed=seed,
                    lr=1e-3,
                    batch_size=32,
                    init="random",
                    image_size=96,
                    model=model,
                    **VARIANTS[variant],
                )
                out = Path(folder) / f"{variant}-{seed}"
                start = time.perf_counter()
                msliqe_train.train(config, manifest, out, quiet=True)
                trained = msliqe_train.load_trained(out / msliqe_train.FINAL)
                scores = msliqe_train.predict(trained, held_out, config)
                srcc = correlations(scores, [e.mos for e in held_out])["srcc"]
                results.append(srcc)
                seconds = time.perf_counter() - start
                print(f"{variant} seed {seed}: held-out SRCC {srcc:.3f} ({seconds:.0f} s)")
            mean = statistics.mean(results)
            print(f"{variant}: mean held-out SRCC over {len(results)} seeds: {mean:.3f}")


if __name__ == "__main__":
    main()
