"""One ``BackboneSpec`` per backbone: its name, its ControlNet, the weight sets it loads and
whether it is a tiny twin with random weights, written once.

The command line's and the config's choices (``dlmap.settings.BACKBONES``), the weights each
backbone needs (``dlmap.weights.catalogue.backbone_sets``, ``dlmap weights fetch --backbone``,
the workflow's fetch rules) and how it is built (``dlmap.diffusion.build.load_backbone``) all
read ``BACKBONE_SPECS``. Adding a backbone made of the networks dlmap knows (SD2-base's UNet and
VAE, with SeeSR's ControlNet, a diffusers ControlNet or none) is one entry here. This module
imports neither torch nor diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROLNETS = ("seesr", "diffusers", None)
"""SeeSR's ControlNet with image cross-attention (``dlmap.diffusion.seesr``), a stock diffusers
``ControlNetModel`` on the input image, or none (vanilla SD2)."""

WEIGHT_FOLDER_FIELDS = {
    "sd2-base": "sd2",
    "seesr": "seesr",
    "ram-swin-large": "ram",
    "dape": "dape",
    "sd2-controlnet": "controlnet",
}
"""Weight set -> the ``BackboneSettings`` field (and ``dlmap enhance`` flag) that may name its
folder instead of the cache's."""


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone (see the module doc). weight_sets: the catalogue's sets it loads, none for a
    tiny twin (random weights from config dicts, ``dlmap.diffusion.tiny``)."""

    name: str
    description: str
    controlnet: str | None
    weight_sets: tuple[str, ...] = ()
    tiny: bool = False

    @property
    def tiny_kind(self) -> str:
        """The tiny twin's kind (``dlmap.diffusion.tiny.tiny_backbone``): "seesr",
        "controlnet" or "vanilla"."""
        return {"seesr": "seesr", "diffusers": "controlnet", None: "vanilla"}[self.controlnet]


BACKBONE_SPECS: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="sd2-seesr",
            description="SD2-base with SeeSR's ControlNet reading RAM/DAPE embeddings (paper)",
            controlnet="seesr",
            weight_sets=("sd2-base", "seesr", "ram-swin-large", "dape"),
        ),
        BackboneSpec(
            name="sd2-controlnet",
            description="SD2-base with a diffusers ControlNet of your own on the input image",
            controlnet="diffusers",
            weight_sets=("sd2-base", "sd2-controlnet"),
        ),
        BackboneSpec(
            name="sd2",
            description="vanilla SD2-base, no ControlNet (the paper's Fig. 7 ablation)",
            controlnet=None,
            weight_sets=("sd2-base",),
        ),
        BackboneSpec(
            name="tiny-seesr",
            description="sd2-seesr's classes at toy size, random weights",
            controlnet="seesr",
            tiny=True,
        ),
        BackboneSpec(
            name="tiny-controlnet",
            description="sd2-controlnet's classes at toy size, random weights",
            controlnet="diffusers",
            tiny=True,
        ),
        BackboneSpec(
            name="tiny-vanilla",
            description="sd2's classes at toy size, random weights",
            controlnet=None,
            tiny=True,
        ),
    )
}
