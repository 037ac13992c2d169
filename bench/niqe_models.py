"""NIQE's pristine models compared on graded distortions: LIVE's, the old and the new fallback.

    python bench/niqe_models.py [--size 384] [--cache FOLDER] [--contents a,b,...]

Every natural photograph dlmap's fallback uses (``dlmap.priors.niqe_fit.PHOTOGRAPHS``) is resized
(shorter side ``--size``, centre square), then degraded at five levels of Gaussian blur,
Gaussian noise and JPEG compression. Each model scores every image with pyiqa's NIQE; per
content, Spearman's correlation between level and score says whether the model ranks that
photograph's levels correctly (1: all of them). The table gives the mean over contents and
a 95% bootstrap interval over contents (``dlmap.priors.evaluation.per_content_srcc``), and the
pooled SRCC over all contents for comparison.

The fallbacks are fitted leave-one-out: the content being scored is left out of the fit, so
no model has seen the photograph it ranks. LIVE's model never saw them either; its column
needs it in the cache (``dlmap weights fetch niqe``) and is left out, with a line saying so,
otherwise.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np
import torch
from PIL import Image, ImageFilter
from scipy import stats

from dlmap.priors import evaluation, niqe, niqe_fit, niqe_live
from dlmap.weights.cache import WeightsMissingError

BLUR_SIGMAS = (0.5, 1.0, 2.0, 3.0, 4.0)
NOISE_SIGMAS = (2.0, 5.0, 10.0, 20.0, 40.0)  # on 0-255
JPEG_QUALITIES = (90, 70, 50, 30, 10)


def square(pixels: np.ndarray, size: int) -> Image.Image:
    image = Image.fromarray(pixels).convert("RGB")
    scale = size / min(image.size)
    width, height = (max(size, round(side * scale)) for side in image.size)
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def distorted(image: Image.Image, seed: int) -> dict[str, list[np.ndarray]]:
    """Five levels per distortion, mildest first."""
    pixels = np.asarray(image, dtype=np.float64)
    rng = np.random.default_rng(seed)

    def jpeg(quality: int) -> np.ndarray:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))

    def noise(sigma: float) -> np.ndarray:
        noisy = pixels + rng.normal(0.0, sigma, pixels.shape)
        return np.clip(noisy, 0, 255).round().astype(np.uint8)

    return {
        "blur": [np.asarray(image.filter(ImageFilter.GaussianBlur(s))) for s in BLUR_SIGMAS],
        "noise": [noise(s) for s in NOISE_SIGMAS],
        "jpeg": [jpeg(q) for q in JPEG_QUALITIES],
    }


def niqe_score(pixels: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> float:
    from pyiqa.archs.niqe_arch import calculate_niqe

    image = torch.from_numpy(pixels.astype(np.float64) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        value = calculate_niqe(image, 0, True, "yiq", torch.from_numpy(mu), torch.from_numpy(cov))
    return float(value.reshape(-1)[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--cache", default=None, help="the dlmap weights cache")
    parser.add_argument("--contents", default=",".join(niqe_fit.PHOTOGRAPHS))
    parser.add_argument("--resamples", type=int, default=10000)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    contents = [c for c in args.contents.split(",") if c]
    unknown = [c for c in contents if c not in niqe_fit.PHOTOGRAPHS]
    if unknown:
        parser.error(f"--contents: unknown {unknown}; known: {', '.join(niqe_fit.PHOTOGRAPHS)}")
    models = {"LIVE": None, "old fallback": niqe_fit.FALLBACK_V1, "new fallback": niqe_fit.FALLBACK}
    try:
        live = niqe_live.read_model(niqe.resolve_model("live", args.cache).path)[:2]
    except (WeightsMissingError, niqe_live.NotLiveModelError) as error:
        print(f"LIVE's model left out: {error}")
        models.pop("LIVE")

    started = time.perf_counter()
    features = {}  # (recipe version, photograph) -> sharp-patch features, fitted once each
    for recipe in (niqe_fit.FALLBACK_V1, niqe_fit.FALLBACK):
        for name in recipe.photographs:
            features[recipe.version, name] = niqe_fit.recipe_features(
                niqe_fit.FitRecipe(recipe.version, (name,), recipe.scales, recipe.shrinkage)
            )

    def leave_one_out(recipe, content):
        kept = [features[recipe.version, n] for n in recipe.photographs if n != content]
        return niqe_fit.fit_gaussian(np.concatenate(kept), recipe.shrinkage)

    rows = {(model, kind): ([], [], []) for model in models for kind in ("blur", "noise", "jpeg")}
    for index, content in enumerate(contents):
        image = square(niqe_fit.photograph(content), args.size)
        fitted = {
            model: live if recipe is None else leave_one_out(recipe, content)
            for model, recipe in models.items()
        }
        for kind, levels in distorted(image, seed=index).items():
            for level, pixels in enumerate(levels, start=1):
                for model, (mu, cov) in fitted.items():
                    names, grades, scores = rows[model, kind]
                    names.append(content)
                    grades.append(level)
                    scores.append(niqe_score(pixels, mu, cov))
        print(f"  {content}: scored ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    print(
        f"NIQE per-content SRCC (level vs score, 1 = every level ranked right), "
        f"{len(contents)} photographs at {args.size} px, 5 levels each; mean [95% bootstrap "
        f"interval over photographs]; pooled SRCC in parentheses"
    )
    print(f"{'distortion':<11}" + "".join(f"{model:>30}" for model in models))
    for kind in ("blur", "noise", "jpeg"):
        cells = []
        for model in models:
            names, grades, scores = rows[model, kind]
            summary = evaluation.per_content_srcc(
                names, grades, scores, higher_is_better=False, resamples=args.resamples
            )
            pooled = stats.spearmanr(grades, scores)[0]
            cells.append(
                f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"
                f" ({pooled:.2f})"
            )
        print(f"{kind:<11}" + "".join(f"{cell:>30}" for cell in cells))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
