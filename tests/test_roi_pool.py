"""The plain-torch RoI pooling that stands in for torchvision's compiled operator."""

import pytest
import torch
from torchvision.ops import roi_pool as compiled

from dlmap.priors import zoo


def _boxes(generator, count, height, width):
    x = torch.rand(count, 2, generator=generator, dtype=torch.float64) * width
    y = torch.rand(count, 2, generator=generator, dtype=torch.float64) * height
    return torch.stack([x.min(1).values, y.min(1).values, x.max(1).values, y.max(1).values], 1)


@pytest.mark.parametrize("output_size, scale", [((2, 2), 1 / 32), ((3, 5), 0.5), (4, 1.0)])
def test_plain_torch_roi_pool_equals_torchvisions_forward_and_backward(output_size, scale):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 4, 11, 13, generator=generator, dtype=torch.float64)
    height, width = features.shape[-2] / scale, features.shape[-1] / scale
    boxes = [_boxes(generator, 4, height * 1.2, width * 1.2) for _ in range(3)]
    boxes[0][0] = torch.tensor(
        [0.0, 0.0, width, height], dtype=torch.float64
    )  # PaQ-2-PiQ's whole-image box
    boxes[1][0] = torch.tensor(
        [-3.0, -3.0, -1.0, -1.0], dtype=torch.float64
    )  # outside the map: empty bins
    ours_in = features.clone().requires_grad_(True)
    theirs_in = features.clone().requires_grad_(True)
    ours = zoo.PlainRoIPool(output_size, scale)(ours_in, boxes)
    theirs = compiled(theirs_in, boxes, output_size, scale)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    weights = torch.randn(theirs.shape, generator=generator, dtype=torch.float64)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad)  # sums in another order


def test_rois_as_a_k_by_5_tensor_and_bad_shapes():
    features = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[1.0, 0.0, 0.0, 7.0, 7.0], [0.0, 2.0, 2.0, 5.0, 6.0]])
    torch.testing.assert_close(zoo.plain_roi_pool(features, rois, 2), compiled(features, rois, 2))
    with pytest.raises(ValueError, match=r"rois must be \(K, 5\), got \(2, 4\)"):
        zoo.plain_roi_pool(features, rois[:, 1:], 2)


def test_paq2piq_uses_the_plain_torch_pooling_when_the_operator_is_missing(
    offline_priors, monkeypatch
):
    from helpers import build_prior, photo
    from torchvision.ops import RoIPool

    monkeypatch.setattr("dlmap.priors.zoo.compiled_roi_pool_works", lambda: False)
    prior = build_prior("paq2piq", offline_priors)
    net = prior.metric.net
    assert isinstance(net.roi_pool, zoo.PlainRoIPool)
    image = photo(256, dtype=torch.float32)[None].requires_grad_(True)
    ours = prior(image)
    (ours_grad,) = torch.autograd.grad(ours.sum(), image)
    net.roi_pool = RoIPool(net.roi_pool.output_size, net.roi_pool.spatial_scale)
    theirs = prior(image)
    (theirs_grad,) = torch.autograd.grad(theirs.sum(), image)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_grad, theirs_grad)
