"""The demo preset's photographs, their realistic degradation chain and the classical
"other enhancers" (stand-ins for Sec. IV-A and V-C)."""

import json

import numpy as np
import pytest

from dlmap import images
from dlmap.data import demo_set


def _psnr(a, b):
    return 10 * np.log10(1.0 / max(np.mean((np.asarray(a) - np.asarray(b)) ** 2), 1e-12))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    names = list(demo_set.PHOTOGRAPHS)
    ids = [f"{i:04d}" for i in range(len(names))]
    rows = demo_set.make_demo_set(names, 96, 0, ids, folder / "references", folder / "inputs")
    return folder, ids, rows


def test_every_input_is_degraded_by_at_least_three_steps_and_keeps_its_reference(demo):
    folder, ids, rows = demo
    assert [r["id"] for r in rows] == ids
    for image_id, row in zip(ids, rows, strict=True):
        steps = json.loads(row["steps"])["steps"]
        assert len(steps) >= demo_set.MIN_STEPS
        reference = images.load_image(folder / "references" / f"{image_id}.png", size=None)
        degraded = images.load_image(folder / "inputs" / f"{image_id}.png", size=None)
        assert tuple(reference.shape) == (3, 96, 96) == tuple(degraded.shape)
        assert _psnr(reference, degraded) < 30  # a real degradation, not rounding


def test_the_chain_depends_on_the_seed_and_the_id_only(tmp_path):
    clean = demo_set.pristine("coffee", 64)
    first, record = demo_set.realistic_degradation(clean, demo_set.image_seed(0, "0001"))
    again, _ = demo_set.realistic_degradation(clean, demo_set.image_seed(0, "0001"))
    assert np.array_equal(first, again)
    others = [
        demo_set.realistic_degradation(clean, demo_set.image_seed(s, "0001"))[0]
        for s in range(1, 6)
    ]
    assert any(not np.array_equal(first, other) for other in others)
    alone = demo_set.make_demo_set(["coffee"], 64, 0, ["0001"], tmp_path / "r", tmp_path / "i")
    assert json.loads(alone[0]["steps"])["steps"] == record["steps"]


def test_the_classical_enhancers_write_every_image_changed_and_in_range(demo, tmp_path):
    folder, ids, _ = demo
    for name in demo_set.CLASSICAL_ENHANCERS:
        written = demo_set.enhance_folder(name, folder / "inputs", tmp_path / name)
        assert [p.stem for p in written] == ids
        for image_id in ids:
            degraded = images.load_image(folder / "inputs" / f"{image_id}.png", size=None)
            enhanced = images.load_image(tmp_path / name / f"{image_id}.png", size=None)
            assert enhanced.shape == degraded.shape and 0 <= enhanced.min() <= enhanced.max() <= 1
            assert not np.array_equal(enhanced, degraded)


FIDELITY_SEEDS, FIDELITY_SIZE = (0, 1, 2, 3), 224  # the demo preset's size


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory):
    """Mean gain of each classical enhancer over its input, in PSNR (dB) and MS-SSIM, on the
    demo set (every default photograph, 4 seeds: 20 images), through the files the workflow
    writes (8-bit PNGs)."""
    from dlmap.compare.distances import MsSsimDistance

    ms_ssim = MsSsimDistance()

    def similarity(a, b):
        return 1.0 - ms_ssim.distance(*(ms_ssim.features(x[None])[0] for x in (a, b)))

    names = list(demo_set.PHOTOGRAPHS)
    ids = [f"{i:04d}" for i in range(len(names))]
    gains = {name: {"psnr": [], "ms-ssim": []} for name in demo_set.CLASSICAL_ENHANCERS}
    for seed in FIDELITY_SEEDS:
        folder = tmp_path_factory.mktemp(f"seed{seed}")
        demo_set.make_demo_set(names, FIDELITY_SIZE, seed, ids, folder / "ref", folder / "in")
        for name in demo_set.CLASSICAL_ENHANCERS:
            demo_set.enhance_folder(name, folder / "in", folder / name)
        for image_id in ids:
            ref, degraded = (
                images.load_image(folder / part / f"{image_id}.png", size=None)
                for part in ("ref", "in")
            )
            before = _psnr(ref, degraded), similarity(ref, degraded)
            for name in demo_set.CLASSICAL_ENHANCERS:
                enhanced = images.load_image(folder / name / f"{image_id}.png", size=None)
                gains[name]["psnr"].append(_psnr(ref, enhanced) - before[0])
                gains[name]["ms-ssim"].append(similarity(ref, enhanced) - before[1])
    return {name: {k: float(np.mean(v)) for k, v in g.items()} for name, g in gains.items()}


@pytest.mark.parametrize("name", list(demo_set.CLASSICAL_ENHANCERS))
def test_each_classical_enhancer_improves_fidelity_on_average_over_the_demo_set(fidelity, name):
    """Each one helps some images and hurts others (the demo's ranking shows it), but on
    average over the mixed chains each brings the inputs closer to the pristine photographs,
    by PSNR and by MS-SSIM (the simulated observers' metric)."""
    assert fidelity[name]["psnr"] > 0.0, fidelity
    assert fidelity[name]["ms-ssim"] > 0.0, fidelity


def test_each_classical_enhancer_undoes_the_distortion_it_targets():
    """On its own distortion each one brings the image closer to the pristine photograph."""
    from dlmap.data import degradations

    cases = {
        "denoise": (
            "chelsea",
            lambda x: degradations.degrade(x, "noise", 2, np.random.default_rng(0)),
        ),
        "unsharp": ("chelsea", lambda x: degradations.degrade(x, "blur", 1)),
        "autolevels": ("motorcycle", lambda x: degradations.degrade(x, "exposure", 2)),
    }
    for name, (photograph, degrade) in cases.items():
        clean = demo_set.pristine(photograph, 128)
        degraded = degrade(clean)
        enhanced = demo_set.CLASSICAL_ENHANCERS[name](degraded)
        assert enhanced.shape == degraded.shape and 0 <= enhanced.min() <= enhanced.max() <= 1
        assert _psnr(clean, enhanced) > _psnr(clean, degraded) + 0.5, name


def test_a_clean_photograph_is_nearly_left_alone():
    """The denoiser and automatic levels adapt to the image: a pristine photograph (full
    range, no noise) stays close to itself."""
    clean = demo_set.pristine("astronaut", 128)
    assert _psnr(clean, demo_set.denoise(clean)) > 35
    assert _psnr(clean, demo_set.autolevels(clean)) > 35


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown photograph 'moon'.*astronaut"):
        demo_set.pristine("moon", 64)
    with pytest.raises(ValueError, match="unknown enhancer 'sharpen'.*unsharp"):
        demo_set.enhance_folder("sharpen", tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="2 photographs but 1 ids"):
        demo_set.make_demo_set(["coffee", "rocket"], 64, 0, ["0000"], tmp_path, tmp_path)
