"""How far dlmap's BDIA and O-BELM are from their authors' code: the largest difference,
relative to the states' size, between ``dlmap.inversion.bijections`` and the transcriptions
in ``dlmap.testing.official_bijections``, sampling from a pair and inverting a clean latent,
on the tiny SeeSR backbone in float64 (a photograph's latent) and on a nonlinear toy eps.

    python bench/bijection_reference.py

Each chain is compared on the official code's own schedule: BELM's ends at ᾱ = 1 and its
inversion evaluates eps(clean, t = 1) (dlmap's ``ends = alpha-one``); BDIA's sampler ends at
alphas_cumprod[0] on ldm's timesteps 951..1 (``steps_offset = 1``, ``ends = final-alpha``).
"""

from __future__ import annotations

import torch

GAMMA = 0.92
CASES = (
    ("belm", 0, "alpha-one"),
    ("belm", 1, "alpha-one"),
    ("bdia", 1, "final-alpha"),
    ("bdia", 0, "alpha-one"),
)


def main() -> None:
    from skimage import data

    from dlmap.diffusion import tiny
    from dlmap.images import center_crop_resize
    from dlmap.inversion import bijections, registry
    from dlmap.inversion.config import InversionConfig
    from dlmap.testing import official_bijections as official

    torch.set_num_threads(2)
    backbone = tiny.tiny_backbone("seesr", seed=0, dtype=torch.float64)
    pixels = center_crop_resize(data.astronaut().astype("float32") / 255, 64)
    images = torch.from_numpy(pixels).permute(2, 0, 1)[None].double()
    latent, cond = backbone.encode(images, seeds=[0]), backbone.condition(images)

    def toy_eps(z, t, c=None):
        return torch.tanh(z * (0.5 + t / 1000.0)) + 0.05 * z**2

    def tiny_eps(z, t, c=None):
        return backbone.eps(z, t, cond)

    def relative(mine, theirs):
        scale = max(t.abs().max().item() for t in theirs)
        return max((m - t).abs().max().item() for m, t in zip(mine, theirs, strict=True)) / scale

    print(
        f"{'method':<8}{'offset':>7}{'ends':>13}{'eps':>6}{'T':>4}{'sampling':>11}"
        f"{'inversion':>11}{'amplif.':>9}"
    )
    for name, offset, ends in CASES:
        for label, eps in (("toy", toy_eps), ("tiny", tiny_eps)):
            for steps in (10, 20):
                config = InversionConfig.from_flat(
                    steps=steps, bijection=name, gamma=GAMMA, steps_offset=offset, ends=ends
                )
                bijection = registry.make_bijection(config)
                alpha_bar, timesteps = official.reference_alphas(steps, offset, ends)
                gamma = GAMMA if name == "bdia" else None
                clean_t = 1 if ends == "alpha-one" else timesteps[len(alpha_bar) - 2]
                with torch.no_grad():
                    pair = official.invert(name, eps, latent, alpha_bar, timesteps, clean_t, gamma)
                    mine = bijection.invert_latent(eps, latent)
                    inversion = relative(mine, pair)
                    theirs = official.sample(name, eps, *pair, alpha_bar, timesteps, gamma)
                    sampling = relative(bijections.denoise(eps, *pair, bijection.schedule), theirs)
                amplification = bijection.schedule.inverse_amplification()
                print(
                    f"{name:<8}{offset:>7}{ends:>13}{label:>6}{steps:>4}{sampling:>11.1e}"
                    f"{inversion:>11.1e}{amplification:>9.3g}"
                )


if __name__ == "__main__":
    main()
