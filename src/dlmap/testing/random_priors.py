"""The pyiqa priors with random weights: their real architectures, nothing downloaded.

``random_weights()`` is a context manager under which ``create_prior`` builds pyiqa's
metrics without reading or downloading any weight file. It replaces only what would:
pyiqa's checkpoint loader, torchvision's and timm's ImageNet weights, OpenAI CLIP's
checkpoint (a random CLIP of the same class: ViT-B/32 for LIQE, the modified ResNet-50 for
CLIPIQA+, at full size or, with ``small_clip=True``, tiny) and CLIPIQA+'s learned prompts.
Everything else is pyiqa's own code, so costs (time, memory, parameter counts) are those of
the real models. For benchmarks, tests and parameter counts; never for results.
"""

from __future__ import annotations

import contextlib
import importlib
import tempfile
from pathlib import Path
from unittest import mock

import torch

from dlmap.priors import zoo
from dlmap.weights.downloads import FileSet

FULL_CLIP = {
    "ViT-B/32": dict(
        embed_dim=512,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=32,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ),
    "RN50": dict(
        embed_dim=1024,
        vision_layers=(3, 4, 6, 3),
        vision_width=64,
        vision_patch_size=None,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ),
}
"""OpenAI CLIP's ViT-B/32 and RN50 (their published dimensions)."""

SMALL_CLIP = {
    "ViT-B/32": dict(embed_dim=32, vision_layers=2, vision_width=64, vision_patch_size=32),
    "RN50": dict(embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None),
}
SMALL_TEXT = dict(transformer_width=32, transformer_heads=2, transformer_layers=2)

_ARCHS = ("arch_util", "dbcnn_arch", "hypernet_arch", "paq2piq_arch", "unique_arch")
_ARCHS += ("musiq_arch", "clipiqa_arch", "liqe_arch")


def random_clip(name: str, small: bool = False, seed: int = 0):
    """A randomly initialised CLIP of pyiqa's class, in eval mode as pyiqa's loader returns."""
    from pyiqa.archs.clip_model import CLIP

    dims = {**SMALL_CLIP[name], **SMALL_TEXT} if small else dict(FULL_CLIP[name])
    torch.manual_seed(seed)
    return CLIP(image_resolution=224, context_length=77, vocab_size=49408, **dims).float().eval()


@contextlib.contextmanager
def random_weights(small_clip: bool = False):
    """Build pyiqa priors with random weights inside this block (see the module doc)."""
    import timm
    import torchvision
    from pyiqa.archs.clipiqa_arch import PromptLearner

    built = []

    def load_clip(name, device="cpu", **kwargs):
        built.append(random_clip(name, small_clip))
        return built[-1]

    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))

        def learned_prompts(url, *args, **kwargs):
            path = folder / "prompts.pth"
            torch.save(torch.randn(PromptLearner(built[-1]).ctx.shape) * 0.02, path)
            return str(path)

        def patch(target, name, value):
            stack.enter_context(mock.patch.object(target, name, value))

        for arch in _ARCHS:
            module = importlib.import_module(f"pyiqa.archs.{arch}")
            patch(module, "load_pretrained_network", lambda *a, **k: None)
        for builder in ("vgg16", "resnet18", "resnet34"):
            original = getattr(torchvision.models, builder)
            patch(torchvision.models, builder, lambda *a, _b=original, **k: _b(weights=None))
        create = timm.create_model
        patch(timm, "create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False}))
        for arch in ("clipiqa_arch", "liqe_arch"):
            patch(importlib.import_module(f"pyiqa.archs.{arch}"), "load", load_clip)
        patch(
            importlib.import_module("pyiqa.archs.clipiqa_arch"),
            "load_file_from_url",
            learned_prompts,
        )
        patch(FileSet, "missing_files", lambda self, cache=None: [])
        patch(FileSet, "verify", lambda self, cache=None, full=False: 0)
        # pyiqa caches LIQE's text features in its folder: keep random ones out of the cache
        hub_dir = zoo.torch_hub_dir
        patch(zoo, "torch_hub_dir", lambda _folder: hub_dir(folder / "torch"))
        yield
