"""Every pyiqa metric with random weights of its real architecture, offline: one generic block.

Under ``offline_random_weights()`` ``pyiqa.create_metric(name, ...)`` builds with nothing read
from a weight file and nothing downloaded; what cannot be built that way fails at once with
``OfflineUnavailable`` (or a network error), never by hanging. For probes, benchmarks and tests;
never for results. Unlike ``random_priors.random_weights`` nothing here is specific to a model:
the patches sit on the download and load layer, found generically.

What is replaced, and why:

* **Aliases by identity.** After importing pyiqa and every module of ``pyiqa.archs`` (pyiqa
  imports them lazily otherwise), every loaded module is scanned and each name bound to one of
  the functions below is patched there too, so ``from x import f`` copies cannot escape:
  - pyiqa's ``load_pretrained_network``: reads nothing (the network keeps its random
    initialisation); a URL it was given is recorded as the download it would have made.
  - ``load_file_from_url`` (pyiqa's, and by name basicsr's copies, e.g. facexlib's): creates an
    empty *placeholder* file in a temporary folder and returns its path; ``torch.load`` of a
    placeholder returns ``RandomState``, an empty checkpoint whose every key is another one,
    and ``nn.Module.load_state_dict`` of a ``RandomState`` or of an empty mapping (what
    key-renaming loops make of one) is a no-op.
    Any other reader of a placeholder raises ``OfflineUnavailable``: ``torch.jit.load`` (the
    architecture is in the file), ``numpy.load`` and ``scipy.io.loadmat`` (a classical model's
    parameters or statistics are data, not an architecture), or iterating a ``RandomState``
    (the checkpoint is used as raw tensors, e.g. ``a, b = torch.load(path)``).
  - ``torch.hub.load_state_dict_from_url`` (also torchvision's ``weights=`` / ``pretrained=True``
    path): returns a ``RandomState``, so the builder keeps the architecture the real weights
    imply (e.g. inception's ``transform_input``) and skips the load.
  - ``torch.hub.download_url_to_file``, ``torch.hub.load``, ``huggingface_hub``'s
    ``hf_hub_download`` / ``snapshot_download`` (which ``transformers``' ``from_pretrained``
    goes through): raise ``OfflineUnavailable`` naming what was asked for, so metrics that need
    Hugging Face weights are reported "not checked offline"; ``try_to_load_from_cache`` says
    "not cached", so no local Hugging Face file is read either.
  - ``timm.create_model`` and ``open_clip.create_model*``: called without pretrained weights
    (timm's Hugging Face repository is recorded; timm's ``load_pretrained`` is a no-op for
    models built by other paths).
* **OpenAI-CLIP loaders.** A module with a ``_MODELS`` table of CLIP names and a ``_download``
  function (pyiqa's ``clip_model``, ``afineclip_model``, OpenAI's ``clip``) gets a ``_download``
  that returns a placeholder standing for a random CLIP state dict of the published dimensions
  of that name (``CLIP_DIMS``, data); the loader's own ``build_model`` then infers the
  architecture from it as from the real checkpoint, so each loader returns its own class.
* **What a real build would read.** Every download the stand-ins answer is recorded
  (``OfflineBlock.requested``: URL, kind, and the path under a cache laid out as dlmap's), so
  the probe lists each metric's weight files from pyiqa's own loaders (``pyiqa_nr_files.csv``).
* **dlmap's weight checks** (``FileSet.require``) pass: random weights need no file.
* **Caches.** torch's hub folder, ``TORCH_HOME`` and every pyiqa ``DEFAULT_CACHE_DIR`` point at
  the temporary folder (LIQE caches text features there), removed on exit.
* **Network.** ``socket`` connections and name lookups, ``urllib.request.urlopen`` and
  ``requests.Session.request`` raise, so a forgotten download path fails fast.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import socket
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import torch

__all__ = [
    "CLIP_DIMS",
    "modules_of",
    "OfflineBlock",
    "OfflineUnavailable",
    "RandomState",
    "offline_random_weights",
]

_CLIP_FIELDS = (
    "embed_dim image_resolution vision_layers vision_width vision_patch_size"
    " transformer_width transformer_heads"
).split()
CLIP_DIMS = {  # OpenAI CLIP's published dimensions, in the order of _CLIP_FIELDS
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512, 8),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512, 8),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 640, 10),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 768, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 1024, 16),
    "ViT-B/32": (512, 224, 12, 768, 32, 512, 8),
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 8),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768, 12),
}
"""Every CLIP has a 12-layer text transformer, 77 tokens of context and 49408 words."""


def clip_kwargs(name: str) -> dict:
    """Keyword arguments of OpenAI's ``CLIP`` class for the published model ``name``."""
    dims = dict(zip(_CLIP_FIELDS, CLIP_DIMS[name], strict=True))
    return {**dims, "context_length": 77, "vocab_size": 49408, "transformer_layers": 12}


class OfflineUnavailable(RuntimeError):
    """What random weights cannot stand in for offline (a download, a data file, ...)."""


class RandomState(dict):
    """A checkpoint that stands for random weights: empty, and every key is another one."""

    def __missing__(self, key):
        return RandomState()

    def __delitem__(self, key):
        pass

    def __iter__(self):
        raise OfflineUnavailable("a checkpoint used as raw values, not a state dict")


_SHOWN = {"repo_id", "filename"}
_OPTIONAL = ("timm", "open_clip", "clip", "huggingface_hub", "transformers", "requests")
_NETWORK = [(socket.socket, "connect"), (socket.socket, "connect_ex"), (urllib.request, "urlopen")]
_NETWORK += [(socket, "create_connection"), (socket, "getaddrinfo")]


def _refuse(what):
    def refuse(*args, **kwargs):
        shown = [repr(a)[:80] for a in args[:2]] + [
            f"{k}={kwargs[k]!r}" for k in _SHOWN & {*kwargs}
        ]
        raise OfflineUnavailable(f"{what}({', '.join(shown)}) blocked offline (no random stand-in)")

    return refuse


def _without(name, value):
    return lambda *a, _call, **k: _call(*a, **{**k, name: value})


class _Placeholders:
    """Empty files standing for downloads, and what the patched loaders make of them.

    ``requested`` records every file a real build would have read: its URL, its path under a
    cache laid out as the block's folder (``torch/pyiqa/...``, ``torch/checkpoints/...``,
    ``torch/clip/...``, which is the dlmap cache's layout) and its kind (``WeightFile.kind``).
    """

    def __init__(self, folder: Path, root: Path):
        self.folder, self.stand_ins = folder, {}  # path -> RandomState or a state-dict factory
        self.root, self.requested = root, []
        self.torch_load, self.jit_load = torch.load, torch.jit.load

    def record(self, kind: str, url: str, folder, name: str) -> None:
        """One file a real build reads: ``folder`` is where the loader would have put it."""
        try:
            path = (Path(folder).resolve() / name).relative_to(self.root.resolve()).as_posix()
        except ValueError:  # outside the cache layout: kept as the loader gives it, ~ for home
            path = str(Path(folder) / name).replace(str(Path.home()), "~", 1)
        entry = {"kind": kind, "url": url, "path": path}
        if entry not in self.requested:
            self.requested.append(entry)

    def __call__(self, name: str, stand_in) -> str:
        path = self.folder / (name or "download")
        path.touch()
        self.stand_ins[os.path.realpath(path)] = stand_in
        return str(path)

    def get(self, file):
        name = getattr(file, "name", file)  # a path or an open file
        if isinstance(name, (str, os.PathLike)):
            return self.stand_ins.get(os.path.realpath(name))

    def load_file_from_url(self, url, model_dir=None, progress=True, file_name=None, **kwargs):
        name = file_name or os.path.basename(urlparse(url).path)
        self.record("pyiqa", url, model_dir or self.root / "torch" / "pyiqa", name)
        return self(name, RandomState())

    def load_pretrained_network(self, net, model_path, *args, **kwargs):
        """pyiqa's loader: a URL is recorded as its own download would be; nothing is read."""
        if str(model_path).startswith(("https://", "http://")):
            self.load_file_from_url(model_path)

    def load_state_dict_from_url(self, url, model_dir=None, *args, file_name=None, **kwargs):
        name = file_name or os.path.basename(urlparse(url).path)
        kind = "torchvision" if "download.pytorch.org" in url else "url"
        self.record(kind, url, model_dir or self.root / "torch" / "checkpoints", name)
        return RandomState()

    def timm_model(self, *args, _call, **kwargs):
        """timm's ``create_model`` without pretrained weights; the weights it would fetch are
        recorded (their Hugging Face repository)."""
        if kwargs.get("pretrained"):
            import timm

            name = args[0] if args else kwargs.get("model_name")
            config = timm.models.get_pretrained_cfg(str(name).split(".")[0])
            repo = getattr(config, "hf_hub_id", None) if config is not None else None
            if repo:
                entry = {"kind": "timm", "url": f"https://huggingface.co/{repo}", "path": repo}
                if entry not in self.requested:
                    self.requested.append(entry)
        return _call(*args, **{**kwargs, "pretrained": False})

    def load(self, file, *args, **kwargs):
        if (stand_in := self.get(file)) is None:
            return self.torch_load(file, *args, **kwargs)
        return stand_in() if callable(stand_in) else stand_in

    def script_load(self, file, *args, **kwargs):
        if (stand_in := self.get(file)) is None:
            return self.jit_load(file, *args, **kwargs)
        if callable(stand_in):  # a CLIP state dict: the CLIP loaders then try torch.load
            raise RuntimeError("not a TorchScript archive")
        raise OfflineUnavailable(f"{file} is a TorchScript module: its architecture is in the file")

    def reader(self, original, what):
        def read(file, *args, **kwargs):
            if self.get(file) is not None:
                raise OfflineUnavailable(f"{file} is read as {what}: data, not weights")
            return original(file, *args, **kwargs)

        return read

    def clip_download(self, table: dict):
        names = {url: name for name, url in table.items()}
        from pyiqa.archs.clip_model import CLIP  # OpenAI's state-dict layout, shared by the copies

        def download(url, root=None, *args, **kwargs):
            if names.get(url) not in CLIP_DIMS:
                raise OfflineUnavailable(f"CLIP {names.get(url, url)}: dimensions unknown")
            dims = clip_kwargs(names[url])
            self.record("clip", url, root or self.root / "torch" / "clip", os.path.basename(url))
            return self(os.path.basename(url), lambda: CLIP(**dims).float().state_dict())

        return download


def _replacements(placeholders: _Placeholders) -> dict:
    """Function -> stand-in, for every download or load function named in the module doc."""
    import numpy
    import scipy.io
    from pyiqa.archs import arch_util
    from pyiqa.utils import download_util

    new = {
        torch.load: placeholders.load,
        torch.jit.load: placeholders.script_load,
        numpy.load: placeholders.reader(numpy.load, "a NumPy array"),
        scipy.io.loadmat: placeholders.reader(scipy.io.loadmat, "a MATLAB file"),
        torch.hub.load_state_dict_from_url: placeholders.load_state_dict_from_url,
        torch.hub.download_url_to_file: _refuse("torch.hub.download_url_to_file"),
        torch.hub.load: _refuse("torch.hub.load"),
        download_util.load_file_from_url: placeholders.load_file_from_url,
        arch_util.load_pretrained_network: placeholders.load_pretrained_network,
    }
    if timm := sys.modules.get("timm"):
        new[timm.create_model] = partial(placeholders.timm_model, _call=timm.create_model)
        for name in ("load_pretrained", "load_custom_pretrained"):
            new[getattr(timm.models._builder, name)] = lambda *a, **k: None
    if open_clip := sys.modules.get("open_clip"):
        for name in ("create_model", "create_model_and_transforms", "create_model_from_pretrained"):
            if original := getattr(open_clip, name, None):
                new[original] = partial(_without("pretrained", None), _call=original)
    if hub := sys.modules.get("huggingface_hub"):
        for name in ("hf_hub_download", "snapshot_download"):
            new[getattr(hub, name)] = _refuse(f"huggingface_hub.{name}")
        new[hub.try_to_load_from_cache] = lambda *a, **k: None  # "not in the cache"
    return new


def _import_everything() -> None:
    """pyiqa imports its archs lazily: import them all now, so that the scan finds every alias."""
    import pyiqa

    for package in ("pyiqa.archs", "pyiqa.models", "pyiqa.utils"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            with contextlib.suppress(Exception):  # e.g. an absent optional dependency
                importlib.import_module(f"{package}.{info.name}")
    for optional in _OPTIONAL:
        with contextlib.suppress(ImportError):
            importlib.import_module(optional)
    del pyiqa


def _keep_random(load_state_dict):
    def load(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, RandomState) or len(state_dict) == 0:
            return torch.nn.modules.module._IncompatibleKeys([], [])
        return load_state_dict(self, state_dict, *args, **kwargs)

    return load


@dataclass
class OfflineBlock:
    """What ``offline_random_weights`` yields: the temporary folder standing for every cache
    (laid out as the dlmap cache) and the files real builds inside the block would have read,
    in order (dicts of ``kind``, ``url`` and ``path`` under the cache); ``requested_since``
    slices them from a mark (``len(block.requested)`` before a build)."""

    folder: Path
    requested: list

    def requested_since(self, mark: int) -> list:
        return self.requested[mark:]


@contextlib.contextmanager
def offline_random_weights(seed: int = 0):
    """Build pyiqa metrics with random weights, offline, inside this block (see the module doc).

    Yields an ``OfflineBlock``. dlmap's own weight checks (``FileSet.require``) pass inside it:
    random weights need no file.
    """
    _import_everything()
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="offline-pyiqa-")))
        (folder / "placeholders").mkdir()
        (folder / "torch" / "pyiqa").mkdir(parents=True)
        placeholders = _Placeholders(folder / "placeholders", folder)

        def patch(target, name, value):
            stack.enter_context(mock.patch.object(target, name, value))

        by_id = {id(old): (old, new) for old, new in _replacements(placeholders).items()}
        for name, module in list(sys.modules.items()):
            if module is None:
                continue
            namespace = vars(module)
            for attribute, value in list(namespace.items()):
                if (found := by_id.get(id(value))) and found[0] is value:
                    patch(module, attribute, found[1])
            if callable(namespace.get("load_file_from_url")):  # basicsr's copies (facexlib ...)
                patch(module, "load_file_from_url", placeholders.load_file_from_url)
            if name.startswith("pyiqa") and isinstance(namespace.get("DEFAULT_CACHE_DIR"), str):
                patch(module, "DEFAULT_CACHE_DIR", str(folder / "torch" / "pyiqa"))
            table = namespace.get("_MODELS")
            if isinstance(table, dict) and "ViT-B/32" in table and "_download" in namespace:
                patch(module, "_download", placeholders.clip_download(table))
        if hub := sys.modules.get("huggingface_hub"):
            for name in ("hf_hub_download", "snapshot_download"):
                patch(hub.HfApi, name, _refuse(f"HfApi.{name}"))
        patch(torch.nn.Module, "load_state_dict", _keep_random(torch.nn.Module.load_state_dict))
        for target, name in _NETWORK:
            patch(target, name, _refuse(f"network access ({name})"))
        if requests := sys.modules.get("requests"):
            patch(requests.Session, "request", _refuse("network access (requests)"))
        variables = {"TORCH_HOME": str(folder / "torch"), "HF_HUB_OFFLINE": "1"}
        stack.enter_context(mock.patch.dict(os.environ, variables))
        stack.callback(torch.hub.set_dir, torch.hub.get_dir())
        torch.hub.set_dir(str(folder / "torch"))
        from dlmap.weights.downloads import FileSet

        patch(FileSet, "require", lambda self, cache=None, full=False: 0)
        torch.manual_seed(seed)
        yield OfflineBlock(folder, placeholders.requested)


def modules_of(metric: torch.nn.Module) -> list[torch.nn.Module]:
    """The metric's module tree and the modules pyiqa hides from it in lists or tuples (its
    CLIPs, kept out of ``.parameters()`` and ``.double()``), each once."""
    found, stack = {}, [metric]
    while stack:
        item = stack.pop()
        for child in item.modules():
            if id(child) not in found:
                found[id(child)] = child
                for value in vars(child).values():
                    if isinstance(value, (list, tuple)):
                        stack += [v for v in value if isinstance(v, torch.nn.Module)]
    return list(found.values())
