"""The two distances of pair selection (Eq. 18), each pluggable by name.

The paper defers D1 and D2 to Cao, Wang and Ma (CVPR 2021); our defaults and why: docs/compare.md.

D1, the discrepancy between two enhancers' outputs r_i(x) and r_j(x) (``D1_METRICS``):

* ``lpips`` (default): LPIPS v0.1 of the ``lpips`` package, AlexNet trunk (the package's
  default) with its shipped linear layers; images in [0, 1] are mapped to [-1, 1] as
  ``LPIPS(normalize=True)`` does. Needs torchvision's AlexNet (``dlmap weights fetch lpips``).
* ``dists``: DISTS (Ding et al. 2020) as ``dists-pytorch`` computes it, with the alpha/beta
  that ship in that package. Needs torchvision's VGG16 (``dlmap weights fetch dists``).
* ``ms-ssim``: 1 - MS-SSIM (Wang, Simoncelli and Bovik 2003) on BT.601 luma, weight-free.

Each D1 splits into ``features`` (once per (enhancer, image)) and ``distance`` between two
cached features, so that N enhancers cost N network passes per image, not N(N-1).

D2(x, S) = min over s in S of the cosine distance 1 - cos(e(x), e(s)), with the unit-norm
embedding e of ``D2_EMBEDDINGS``:

* ``clip`` (default): OpenAI CLIP ViT-B/32 image embeddings (open_clip, loaded from OpenAI's
  ``ViT-B-32.pt``, which needs the ``ViT-B-32-quickgelu`` architecture: ``dlmap weights fetch
  clip-vit-b-32``); bicubic resize of the shorter side to 224, centre crop, CLIP's normalisation.
* ``handcrafted``: weight-free colour and texture (see ``HandcraftedEmbedding``).

Constructors never download: missing weights raise ``WeightsMissingError`` naming the files.
The weight-free choices must be asked for by name; nothing falls back to them.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import warnings
from importlib import metadata, resources

import numpy as np
import torch
import torch.nn.functional as F

from dlmap import settings
from dlmap.errors import InputError
from dlmap.weights import cache as weights
from dlmap.weights import catalogue


class UnknownDistanceError(InputError):
    """A D1 or D2 name that is not registered."""


class DistanceInputError(InputError):
    """Images a distance cannot measure (e.g. too small for MS-SSIM)."""


def _weight_files(set_name: str, cache) -> list[dict]:
    """Check that every file of download set ``set_name`` is in the cache (else raise
    ``WeightsMissingError``), verify their sha256, and return their provenance."""
    return catalogue.get(set_name).provenance(cache)


def _package_file(package: str, name: str) -> dict:
    """Provenance of a data file shipped inside an installed package."""
    path = resources.files(package) / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"file": str(path), "package": f"{package} {_version(package)}", "sha256": digest}


def _version(package: str) -> str:
    names = {"DISTS_pytorch": "dists-pytorch", "open_clip": "open_clip_torch"}
    return metadata.version(names.get(package, package))


@contextlib.contextmanager
def _cached_torchvision(cache):
    """Build torchvision networks from ``<cache>/torch/checkpoints`` (torch's hub folder
    pointed there), without the warnings about the ``pretrained=`` that lpips and
    dists-pytorch still pass."""
    from dlmap.priors.zoo import torch_hub_dir

    with warnings.catch_warnings(), torch_hub_dir(weights.cache_dir(cache) / "torch"):
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        yield


class Distance:
    """Common parts: ``name``, ``device`` and ``provenance`` (recorded in the outputs)."""

    name = ""
    description = ""

    def __init__(self, device="cpu", weights_used: list | None = None):
        self.device = torch.device(device)
        self.provenance = {
            "name": self.name,
            "description": self.description,
            "weights": weights_used if weights_used is not None else "none (weight-free)",
        }

    @classmethod
    def from_network(cls, network, device="cpu"):
        """Wrap a network built elsewhere, e.g. with random weights in tests (``lpips.LPIPS(
        pnet_rand=True)``, a random VGG16 DISTS, an open_clip model with ``pretrained=None``);
        subclasses with weights implement ``_setup(network, device, weights_used)``."""
        wrapped = cls.__new__(cls)
        wrapped._setup(network, device, ["(given network: not the paper's weights)"])
        return wrapped


# --- D1 --------------------------------------------------------------------------------------


class LpipsDistance(Distance):
    """LPIPS: features are the channel-normalised AlexNet maps of one image; the distance
    is sum over layers of the spatial mean of lin_l((f_l(a) - f_l(b))^2), as LPIPS.forward."""

    name = "lpips"
    description = "LPIPS v0.1 (lpips package), AlexNet trunk, inputs [0,1] mapped to [-1,1]"

    def __init__(self, cache=None, device="cpu"):
        files = _weight_files("lpips", cache)
        import lpips

        with _cached_torchvision(cache):
            network = lpips.LPIPS(net="alex", version="0.1", verbose=False)
        self._setup(network, device, [*files, _package_file("lpips", "weights/v0.1/alex.pth")])

    def _setup(self, network, device, weights_used):
        Distance.__init__(self, device, weights_used)
        self.network = network.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> list:
        import lpips

        scaled = self.network.scaling_layer(2 * images.to(self.device) - 1)
        maps = [lpips.normalize_tensor(out) for out in self.network.net.forward(scaled)]
        return [[layer[b : b + 1] for layer in maps] for b in range(images.shape[0])]

    @torch.no_grad()
    def distance(self, a: list, b: list) -> float:
        total = 0.0
        for lin, fa, fb in zip(self.network.lins, a, b, strict=True):
            total += float(lin((fa - fb) ** 2).mean())
        return total


class DistsDistance(Distance):
    """DISTS: features are the six maps of ``forward_once`` with their spatial means and
    variances; the distance is dists-pytorch's 1 - sum(alpha S1 + beta S2)."""

    name = "dists"
    description = "DISTS (dists-pytorch), VGG16 trunk, its shipped alpha/beta"

    def __init__(self, cache=None, device="cpu"):
        files = _weight_files("dists", cache)
        from DISTS_pytorch import DISTS

        with _cached_torchvision(cache):
            network = DISTS(load_weights=False)
        shipped = _package_file("DISTS_pytorch", "weights.pt")  # not sys.prefix's copy
        state = torch.load(shipped["file"], map_location="cpu", weights_only=True)
        network.alpha.data, network.beta.data = state["alpha"], state["beta"]
        self._setup(network, device, [*files, shipped])

    def _setup(self, network, device, weights_used):
        Distance.__init__(self, device, weights_used)
        self.network = network.eval().requires_grad_(False).to(self.device)
        total = self.network.alpha.sum() + self.network.beta.sum()
        chns = self.network.chns
        self.alpha = torch.split(self.network.alpha / total, chns, dim=1)
        self.beta = torch.split(self.network.beta / total, chns, dim=1)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> list:
        per_image = [[] for _ in range(images.shape[0])]
        for layer in self.network.forward_once(images.to(self.device)):
            mean = layer.mean([2, 3], keepdim=True)
            variance = ((layer - mean) ** 2).mean([2, 3], keepdim=True)
            for b, features in enumerate(per_image):
                features.append((layer[b : b + 1], mean[b : b + 1], variance[b : b + 1]))
        return per_image

    @torch.no_grad()
    def distance(self, a: list, b: list) -> float:
        c1 = c2 = 1e-6  # DISTS's constants
        structure, texture = 0.0, 0.0
        for k, ((fa, ma, va), (fb, mb, vb)) in enumerate(zip(a, b, strict=True)):
            s1 = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
            covariance = (fa * fb).mean([2, 3], keepdim=True) - ma * mb
            s2 = (2 * covariance + c2) / (va + vb + c2)
            structure += float((self.alpha[k] * s1).sum())
            texture += float((self.beta[k] * s2).sum())
        return 1.0 - (structure + texture)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, five scales
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
LUMA_BT601 = (0.299, 0.587, 0.114)


class MsSsimDistance(Distance):
    """1 - MS-SSIM (Wang, Simoncelli and Bovik 2003) on BT.601 luma, data range 1, computed
    as pyiqa's ``ms_ssim`` computes it (equal to it on luma input of side >= 176): 11x11
    Gaussian window (sigma 1.5, valid convolution), K1 = 0.01, K2 = 0.03, the contrast-
    structure map clamped at 0, 2x2 average pooling between scales (odd sides zero-padded),
    and the five exponents of Wang et al. An image too small for five scales (side < 176)
    uses as many scales as fit an 11x11 window, with their exponents rescaled to sum to 1;
    below 11 pixels it is an error. Weight-free."""

    name = "ms-ssim"
    description = "1 - MS-SSIM (luma, Wang et al. 2003 exponents), weight-free"

    def __init__(self, cache=None, device="cpu"):
        super().__init__(device)
        axis = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
        gauss = torch.exp(-(axis**2) / (2 * SSIM_SIGMA**2))
        gauss = (gauss / gauss.sum()).to(self.device)
        self.window = (gauss[:, None] * gauss[None, :])[None, None]

    def features(self, images: torch.Tensor) -> list:
        weights_ = torch.tensor(LUMA_BT601, dtype=torch.float64, device=self.device)
        luma = (images.to(self.device, torch.float64) * weights_[:, None, None]).sum(1, True)
        return [luma[b : b + 1] for b in range(images.shape[0])]

    @staticmethod
    def scales(side: int) -> int:
        if side < SSIM_WINDOW:
            raise DistanceInputError(
                f"MS-SSIM needs images of at least {SSIM_WINDOW} pixels, got {side}"
            )
        return min(len(MS_SSIM_WEIGHTS), 1 + int(math.log2(side / SSIM_WINDOW)))

    def _ssim_maps(self, a, b) -> tuple[torch.Tensor, torch.Tensor]:
        """SSIM's luminance and contrast-structure maps."""
        c1, c2 = SSIM_K1**2, SSIM_K2**2
        mu_a, mu_b = F.conv2d(a, self.window), F.conv2d(b, self.window)
        var_a = F.conv2d(a * a, self.window) - mu_a**2
        var_b = F.conv2d(b * b, self.window) - mu_b**2
        cov = F.conv2d(a * b, self.window) - mu_a * mu_b
        luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
        return luminance, F.relu((2 * cov + c2) / (var_a + var_b + c2))

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        levels = self.scales(min(a.shape[-2:]))
        exponents = np.asarray(MS_SSIM_WEIGHTS[:levels]) / sum(MS_SSIM_WEIGHTS[:levels])
        value = 1.0
        for level, exponent in enumerate(exponents):
            luminance, contrast_structure = self._ssim_maps(a, b)
            last = level == levels - 1  # the coarsest scale contributes the whole SSIM
            term = float((luminance * contrast_structure if last else contrast_structure).mean())
            value *= term**exponent
            padding = (a.shape[2] % 2, a.shape[3] % 2)
            a, b = F.avg_pool2d(a, 2, padding=padding), F.avg_pool2d(b, 2, padding=padding)
        return 1.0 - value


# --- D2 --------------------------------------------------------------------------------------


class ClipEmbedding(Distance):
    """CLIP image embeddings, L2-normalised (the D2 the design names)."""

    name = "clip"
    description = "cosine distance of OpenAI CLIP ViT-B/32 image embeddings (open_clip)"

    def __init__(self, cache=None, device="cpu"):
        files = _weight_files("clip-vit-b-32", cache)
        model = load_openai_clip(files[0]["file"])
        self._setup(model, device, files)

    def _setup(self, model, device, weights_used):
        import open_clip

        Distance.__init__(self, device, weights_used)
        self.model = model.eval().requires_grad_(False).to(self.device)
        size = model.visual.image_size
        self.size = size[0] if isinstance(size, tuple | list) else int(size)
        self.mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=self.device)[:, None, None]
        self.std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=self.device)[:, None, None]

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) in [0, 1] -> (B, d) unit-norm float64 embeddings."""
        images = images.to(self.device, torch.float32)
        height, width = images.shape[-2:]
        scale = self.size / min(height, width)
        shape = (max(self.size, round(height * scale)), max(self.size, round(width * scale)))
        resized = F.interpolate(images, size=shape, mode="bicubic", antialias=True).clamp(0, 1)
        top, left = (shape[0] - self.size) // 2, (shape[1] - self.size) // 2
        crop = resized[..., top : top + self.size, left : left + self.size]
        features = self.model.encode_image((crop - self.mean) / self.std).double()
        return F.normalize(features, dim=-1).cpu().numpy()


def load_openai_clip(path):
    """OpenAI's CLIP file (a TorchScript archive) as an open_clip model with QuickGELU.
    ``open_clip.create_model(..., pretrained=path)`` refuses TorchScript archives under
    torch's ``weights_only`` loading; ``load_openai_model`` reads them."""
    import open_clip

    return open_clip.load_openai_model(str(path), precision="fp32", device="cpu")


ORIENTATION_BINS, COLOUR_BINS = 8, 4


class HandcraftedEmbedding(Distance):
    """Weight-free colour and texture embedding: the square roots of (a) the joint RGB
    histogram with 4 bins per channel (64 bins, sums to 1) and (b) magnitude-weighted
    histograms of unsigned gradient orientation (8 bins over [0, pi), luma, central
    differences) in each cell of a 2x2 grid, at full and half resolution (64 bins, each scale
    summing to 1). Each block is L2-normalised and the two are weighted equally, so the
    cosine of two embeddings averages the Bhattacharyya coefficients of the histograms."""

    name = "handcrafted"
    description = "cosine distance of colour + gradient-orientation histograms, weight-free"

    def __init__(self, cache=None, device="cpu"):
        super().__init__(device)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        pixels = images.detach().to("cpu", torch.float64).numpy()
        return np.stack([self._embed_one(image) for image in pixels])

    @staticmethod
    def _colour(image: np.ndarray) -> np.ndarray:
        index = np.clip((image * COLOUR_BINS).astype(int), 0, COLOUR_BINS - 1)
        flat = (index[0] * COLOUR_BINS + index[1]) * COLOUR_BINS + index[2]
        return np.bincount(flat.ravel(), minlength=COLOUR_BINS**3).astype(np.float64)

    @staticmethod
    def _orientations(luma: np.ndarray) -> np.ndarray:
        dy, dx = np.gradient(luma)
        magnitude, angle = np.hypot(dx, dy), np.mod(np.arctan2(dy, dx), np.pi)
        bins = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(int), ORIENTATION_BINS - 1)
        height, width = luma.shape
        cells = []
        for rows in (slice(0, height // 2), slice(height // 2, height)):
            for cols in (slice(0, width // 2), slice(width // 2, width)):
                cell = np.bincount(
                    bins[rows, cols].ravel(), magnitude[rows, cols].ravel(), ORIENTATION_BINS
                )
                cells.append(cell)
        histogram = np.concatenate(cells)
        return histogram / max(histogram.sum(), 1e-12)

    def _embed_one(self, image: np.ndarray) -> np.ndarray:
        luma = np.tensordot(np.asarray(LUMA_BT601), image, axes=1)
        half = luma[: luma.shape[0] // 2 * 2, : luma.shape[1] // 2 * 2]
        half = half.reshape(half.shape[0] // 2, 2, half.shape[1] // 2, 2).mean(axis=(1, 3))
        blocks = [
            np.sqrt(self._colour(image) / image[0].size),
            np.sqrt(np.concatenate([self._orientations(luma), self._orientations(half)])),
        ]
        blocks = [block / max(np.linalg.norm(block), 1e-12) for block in blocks]
        vector = np.concatenate(blocks)
        return vector / max(np.linalg.norm(vector), 1e-12)


# --- registries ------------------------------------------------------------------------------

D1_METRICS = {"lpips": LpipsDistance, "dists": DistsDistance, "ms-ssim": MsSsimDistance}
D2_EMBEDDINGS = {"clip": ClipEmbedding, "handcrafted": HandcraftedEmbedding}
# the names the command line and the workflow accept (dlmap.settings) name these classes
assert tuple(D1_METRICS) == settings.D1_METRICS and tuple(D2_EMBEDDINGS) == settings.D2_EMBEDDINGS


def _lookup(registry: dict, kind: str, name: str):
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownDistanceError(f"unknown {kind} {name!r}{hint} (known: {', '.join(registry)})")
    return registry[name]


def create_d1(name: str, cache=None, device="cpu"):
    """The D1 metric ``name`` (``D1_METRICS``); raises ``WeightsMissingError`` if its
    weights are not in the cache."""
    return _lookup(D1_METRICS, "D1", name)(cache=cache, device=device)


def create_d2(name: str, cache=None, device="cpu"):
    """The D2 embedding ``name`` (``D2_EMBEDDINGS``); raises ``WeightsMissingError`` if its
    weights are not in the cache."""
    return _lookup(D2_EMBEDDINGS, "D2", name)(cache=cache, device=device)
