"""Graded degradations and the synthetic IQA set built from them."""

import numpy as np
import pytest

from dlmap.data import degradations, synthetic_iqa
from dlmap.data import manifests as datasets


def _gradient_energy(image):
    return np.abs(np.diff(image.mean(axis=2), axis=1)).mean()


@pytest.fixture(scope="module")
def clean():
    return synthetic_iqa.photograph("astronaut", 96)


@pytest.mark.parametrize(
    "name, measure",
    [
        ("blur", lambda clean, x: -_gradient_energy(x)),  # detail falls
        ("noise", lambda clean, x: np.abs(x - clean).mean()),  # error grows
        ("jpeg", lambda clean, x: np.abs(x - clean).mean()),
        ("contrast", lambda clean, x: -x.std()),  # contrast falls
        ("exposure", lambda clean, x: -x.mean()),  # darker
        ("colour", lambda clean, x: (x[..., 0] - x[..., 2]).mean()),  # redder, less blue
    ],
)
def test_each_degradation_grows_strictly_with_its_level(clean, name, measure):
    rng = np.random.default_rng(0)
    images = [degradations.degrade(clean, name, level, rng) for level in range(6)]
    np.testing.assert_allclose(images[0], clean, atol=1 / 255)  # level 0: the image
    values = [measure(clean, image) for image in images]
    assert all(a < b for a, b in zip(values[:-1], values[1:], strict=True)), values
    assert all(image.min() >= 0 and image.max() <= 1 for image in images)


def test_bad_degradation_arguments_are_refused(clean):
    with pytest.raises(ValueError, match="unknown degradation 'fog'; known: blur"):
        degradations.degrade(clean, "fog", 1)
    with pytest.raises(ValueError, match="level must be 0..5, got 6"):
        degradations.degrade(clean, "blur", 6)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) image"):
        degradations.degrade(clean[..., 0], "blur", 1)


def test_the_synthetic_set_is_split_by_photograph_with_mos_a_function_of_level(tmp_path):
    manifest = synthetic_iqa.make_synthetic_set(tmp_path, size=32, tiles=2)
    entries = datasets.read_manifest_resolved(manifest)
    photographs = len(synthetic_iqa.PHOTOGRAPHS)
    assert len(entries) == photographs * 4 * 6  # tiles x (pristine + 5 levels)
    splits = {}
    for entry in entries:
        splits.setdefault(entry.reference, set()).add(entry.split)
        assert entry.mos == pytest.approx(1 - entry.mos_original / 6)
        assert (tmp_path / entry.image).is_file()
    assert all(len(found) == 1 for found in splits.values())  # no photograph in two splits
    assert {split for (split,) in splits.values()} == {"train", "val", "test"}
    moved = tmp_path.rename(tmp_path.with_name("moved"))  # paths are relative to the manifest
    assert datasets.read_manifest_resolved(moved / "manifest.csv")[0].image.startswith(str(moved))
