"""Prior registry and the built-in priors; one test walks every registered prior."""

import pytest
import torch
import torch.nn.functional as F
from helpers import build_prior, photo

from dlmap.priors import base, specs, statistics
from dlmap.priors import registry as priors
from dlmap.settings import SolverConfig


@pytest.mark.parametrize("name", priors.available_priors())
def test_every_prior_scores_each_image_alone_with_finite_nonzero_gradients(name, offline_priors):
    """Random weights (real architectures): a 64x64 photograph upsampled to 224 and a 512x512
    one, forward and backward; per-image scores; calibrated scores in (0, 100), or (0, 1) as
    printed; frozen."""
    prior = build_prior(name, offline_priors)
    assert prior.info.name == name and prior.info.display_name and prior.info.reference
    small = F.interpolate(photo(64, "astronaut")[None].float(), size=224, mode="bilinear")
    large = photo(512, "coffee")[None].float()
    alone = {}
    for label, image in (("small", small), ("large", large)):
        image = image.clone().requires_grad_(True)
        score = prior(image)
        assert score.shape == (1,) and torch.isfinite(score).all(), label
        (grad,) = torch.autograd.grad(prior.calibrated(image).sum(), image)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0, label
        alone[label] = score.detach()
    pair = torch.cat([small, F.interpolate(large, size=224, mode="bilinear")])
    together = prior(pair).detach()
    assert together.shape == (2,)
    assert torch.allclose(together[0], alone["small"][0], rtol=1e-4, atol=1e-5)
    calibrated = prior.calibrated(pair)  # the default scale: the authors' 0-100
    assert ((calibrated > 0) & (calibrated < 100)).all()
    printed = prior.calibrated(pair, "printed")
    assert ((printed > 0) & (printed < 1)).all() and torch.allclose(calibrated, 100 * printed)
    assert not any(p.requires_grad for p in prior.parameters())


def test_colorfulness_ranks_grey_below_a_colour_photograph():
    prior = priors.create_prior("colorfulness").double()
    grey = photo(64, "camera")[None]  # a greyscale photograph replicated to RGB
    colour = photo(64, "astronaut")[None]
    assert prior(grey).item() == pytest.approx(0.0, abs=1e-4)
    assert prior(colour).item() > 20


def test_sharpness_drops_when_the_photograph_is_blurred():
    prior = priors.create_prior("sharpness").double()
    image = photo(64, "astronaut")[None]
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1)
    assert prior(blurred).item() < prior(image).item() - 0.5


def test_unknown_prior_suggests_the_closest_name():
    with pytest.raises(priors.UnknownPriorError) as error:
        priors.create_prior("colourfulness")
    message = str(error.value)
    assert "did you mean 'colorfulness'" in message and "sharpness" in message


def test_a_user_prior_registers_with_one_decorator():
    @priors.register_prior("test-brightness")
    class Brightness(base.Prior):
        info = specs.PriorInfo("test-brightness", "Brightness", True, 0.5, 0.1, (0, 1))

        def forward(self, images):
            return images.flatten(1).mean(dim=1)

    try:
        prior = priors.create_prior("test-brightness")
        assert prior(torch.ones(2, 3, 8, 8)).tolist() == [1.0, 1.0]
    finally:
        base.REGISTERED.pop("test-brightness")


def test_a_user_prior_registers_from_an_entry_point_string():
    priors.register_entry_point("test-colour", "dlmap.priors.statistics:Colorfulness")
    try:
        assert isinstance(priors.create_prior("test-colour"), statistics.Colorfulness)
    finally:
        base.REGISTERED.pop("test-colour")
    with pytest.raises(ValueError, match="cannot import prior"):
        priors.register_entry_point("x", "dlmap.priors.registry:DoesNotExist")
    with pytest.raises(ValueError, match="package.module:factory"):
        priors.register_entry_point("x", "no_colon_here")


def test_a_factory_must_return_a_prior():
    priors.register_prior("test-bad")(lambda: torch.nn.Identity())
    try:
        with pytest.raises(TypeError, match="not a Prior"):
            priors.create_prior("test-bad")
    finally:
        base.REGISTERED.pop("test-bad")


@pytest.mark.parametrize("name", priors.available_priors())
def test_latent_map_with_each_prior_raises_its_calibrated_score(name, offline_priors, tiny32):
    """A short latent MAP (lambda large, so the prior term leads) on the tiny backbone: one
    update raises the prior's calibrated score, averaged over two photographs."""
    from dlmap.enhance import solver
    from dlmap.inversion.config import InversionConfig

    images = torch.stack(
        [photo(224, picture, torch.float32) for picture in ("astronaut", "coffee")]
    )
    config = SolverConfig(mode="latent-map", lam=1e4, iters=1)
    prior = build_prior(name, offline_priors)
    result = solver.map_solve(tiny32, prior, images, config, InversionConfig(steps=2), quiet=True)
    before = sum(result.history[0]["score"]) / 2
    after = (sum(result.final["x"]["score"]) + sum(result.final["y"]["score"])) / 4
    assert after > before, (before, after)


USER_PRIOR = """
import torch
from dlmap.priors.base import CallablePrior
from dlmap.priors.specs import PriorInfo


def make():
    info = PriorInfo("lab-brightness", "Lab brightness", True, 0.5, 0.1, (0, 1))
    return CallablePrior(lambda images: images.flatten(1).mean(dim=1), info)
"""


def test_a_user_prior_registers_from_one_yaml_entry(tmp_path, monkeypatch, capsys):
    from dlmap.cli import main as cli

    (tmp_path / "lab_priors.py").write_text(USER_PRIOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "priors.yaml"
    config.write_text("priors:\n  lab-brightness: lab_priors:make\n")
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 60, 30)).save(image)
    argv = ["enhance", str(image), "--out", str(tmp_path / "out"), "--backbone", "tiny-seesr"]
    argv += ["--size", "64", "--iters", "1", "--steps", "2", "--quiet"]
    try:
        assert cli.main([*argv, "--prior", "lab-brightness", "--prior-file", str(config)]) == 0
        assert "lab-brightness" in priors.available_priors()
        assert priors.create_prior("lab-brightness")(torch.ones(1, 3, 8, 8)).item() == 1.0
    finally:
        base.REGISTERED.pop("lab-brightness", None)


@pytest.mark.parametrize(
    "content, message",
    [
        ("something: else\n", "needs a 'priors:' mapping"),
        ("priors:\n  x: no_colon_here\n", "must look like 'package.module:factory'"),
        ("priors:\n  x: not_a_module_anywhere:make\n", "cannot import prior 'x'"),
        ("priors:\n  x: [1, 2]\n", "entry 'x' must be 'module:factory'"),
        ("priors: [unclosed\n", "prior file"),
    ],
)
def test_a_bad_prior_file_is_answered_naming_the_file(tmp_path, content, message):
    path = tmp_path / "priors.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        priors.register_from_file(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", priors.available_priors())
def test_every_prior_publishes_its_metadata_without_weights(name):
    info = priors.prior_info(name)
    assert info.name == name and info.display_name and info.xi4 != 0
    with pytest.raises(priors.UnknownPriorError, match="did you mean 'niqe'"):
        priors.prior_info("niqee")


def test_a_prior_takes_a_path_a_pil_image_an_array_or_a_list_as_pyiqa_metrics_do(tmp_path):
    import numpy as np
    from helpers import photo_png
    from PIL import Image

    from dlmap import images
    from dlmap.errors import InputError

    path = photo_png(tmp_path, "coffee", size=48)
    prior = priors.create_prior("sharpness")
    tensor = images.load_image(path, size=None)
    expected = prior(tensor[None])
    pixels = np.asarray(Image.open(path))
    for given in (path, str(path), Image.open(path), pixels, pixels / 255.0, tensor):
        assert torch.equal(prior(given), expected), type(given)
    assert prior([path, pixels]).shape == (2,)
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
    assert torch.equal(prior(rgba), expected)  # opaque alpha: the same image
    with pytest.raises(InputError, match="images of different sizes"):
        prior([path, pixels[:8, :8]])
    with pytest.raises(InputError, match="cannot read a int as an image"):
        prior(3)
    with pytest.raises(InputError, match=r"finite values in \[0, 1\]"):
        prior(pixels * 2.0)
    with pytest.raises(InputError, match="no such file"):
        prior(tmp_path / "missing.png")
