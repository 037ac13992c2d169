"""Prior registry and the built-in priors; one test walks every registered prior."""

import pytest
import torch
from conftest import photo

from dlmap import priors


@pytest.mark.parametrize("name", priors.available_priors())
def test_every_prior_scores_each_image_alone_with_finite_gradients(name):
    prior = priors.create_prior(name).double()
    images = torch.stack([photo(64, "astronaut"), photo(64, "coffee"), photo(64, "chelsea")])
    images.requires_grad_(True)
    scores = prior(images)
    assert scores.shape == (3,)
    for i in range(3):
        assert scores[i].item() == pytest.approx(prior(images[i : i + 1])[0].item(), rel=1e-12)
    (grad,) = torch.autograd.grad(prior.calibrated(images).sum(), images)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    calibrated = prior.calibrated(images)
    assert ((calibrated > 0) & (calibrated < 1)).all()
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
    class Brightness(priors.Prior):
        info = priors.PriorInfo("test-brightness", "Brightness", True, 0.5, 0.1, (0, 1))

        def forward(self, images):
            return images.flatten(1).mean(dim=1)

    try:
        prior = priors.create_prior("test-brightness")
        assert prior(torch.ones(2, 3, 8, 8)).tolist() == [1.0, 1.0]
    finally:
        priors._REGISTRY.pop("test-brightness")


def test_a_user_prior_registers_from_an_entry_point_string():
    priors.register_entry_point("test-colour", "dlmap.priors:Colorfulness")
    try:
        assert isinstance(priors.create_prior("test-colour"), priors.Colorfulness)
    finally:
        priors._REGISTRY.pop("test-colour")
    with pytest.raises(ValueError, match="cannot import prior"):
        priors.register_entry_point("x", "dlmap.priors:DoesNotExist")
    with pytest.raises(ValueError, match="package.module:factory"):
        priors.register_entry_point("x", "no_colon_here")


def test_a_factory_must_return_a_prior():
    priors.register_prior("test-bad")(lambda: torch.nn.Identity())
    try:
        with pytest.raises(TypeError, match="not a Prior"):
            priors.create_prior("test-bad")
    finally:
        priors._REGISTRY.pop("test-bad")
