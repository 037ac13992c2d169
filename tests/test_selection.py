"""Pair selection (Eq. 18): the greedy rule, the distances, the input layout and ``select``."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import photo
from PIL import Image

from dlmap.cli.main import build_parser
from dlmap.compare import distances, selection
from dlmap.data import degradations
from dlmap.errors import DlmapError
from dlmap.weights import cache as weights

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
ENHANCERS = {"blur": ("blur", 2), "contrast": ("contrast", 3), "jpeg": ("jpeg", 4)}
ENHANCERS["noise"] = ("noise", 2)


def _save(pixels: np.ndarray, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """originals/NAME.png and enhanced/<enhancer>/NAME.png: 64x64 photographs, degraded
    differently by each fake enhancer."""
    root = tmp_path_factory.mktemp("selection")
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        clean = photo(64, name).permute(1, 2, 0).numpy()
        _save(clean, root / "originals" / f"{name}.png")
        for enhancer, (degradation, level) in ENHANCERS.items():
            degraded = degradations.degrade(clean, degradation, level, rng)
            _save(degraded, root / "enhanced" / enhancer / f"{name}.png")
    return root


def _unit_rows(rng, count: int, dim: int = 5) -> np.ndarray:
    rows = rng.normal(size=(count, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _brute_force(d1, embeddings, k, gamma) -> list[int]:
    """Eq. 18 written out: every step scores every unselected image from scratch."""
    chosen: list[int] = []
    for _ in range(k):
        best, best_value = None, -np.inf
        for x in range(len(d1)):
            if x in chosen:
                continue
            d2 = min((1 - float(embeddings[x] @ embeddings[s]) for s in chosen), default=0.0)
            if d1[x] + gamma * d2 > best_value:  # strict: ties keep the first index
                best, best_value = x, d1[x] + gamma * d2
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("gamma", [0.1, 0.5, 3.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_picks_equal_brute_force_eq18(seed, gamma):
    rng = np.random.default_rng(seed)
    d1, embeddings = rng.uniform(0, 1, 15), _unit_rows(rng, 15)
    picks = selection.greedy_select(d1, embeddings, 8, gamma)
    assert [pick.index for pick in picks] == _brute_force(d1, embeddings, 8, gamma)
    assert picks[0].d2 is None and picks[0].objective == d1[picks[0].index]
    for order, pick in enumerate(picks[1:], start=1):
        earlier = embeddings[[p.index for p in picks[:order]]]
        assert pick.d2 == pytest.approx((1 - earlier @ embeddings[pick.index]).min())
        assert pick.objective == pytest.approx(pick.d1 + gamma * pick.d2)


def test_gamma_zero_picks_the_top_k_d1():
    rng = np.random.default_rng(3)
    d1 = rng.uniform(0, 1, 20)
    picks = selection.greedy_select(d1, _unit_rows(rng, 20), 7, 0.0)
    assert [pick.index for pick in picks] == list(np.argsort(-d1)[:7])


def test_diversity_term_prefers_a_different_image_to_a_near_duplicate():
    d1 = np.array([1.0, 0.95, 0.9])  # images 0 and 1 look alike, image 2 differs
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert [p.index for p in selection.greedy_select(d1, embeddings, 2, 0.0)] == [0, 1]
    assert [p.index for p in selection.greedy_select(d1, embeddings, 2, 0.1)] == [0, 2]


def test_ties_go_to_the_first_candidate_name():
    embeddings = np.tile([[1.0, 0.0]], (5, 1))
    picks = selection.greedy_select(np.full(5, 0.3), embeddings, 3, 0.1)
    assert [pick.index for pick in picks] == [0, 1, 2]


def test_k_beyond_the_candidate_set_negative_gamma_or_nan_is_an_error():
    with pytest.raises(selection.SelectionInputError, match="K = 6 .* the 5 candidate"):
        selection.greedy_select(np.zeros(5), np.eye(5), 6, 0.1)
    with pytest.raises(selection.SelectionInputError, match="gamma must be >= 0"):
        selection.greedy_select(np.zeros(5), np.eye(5), 2, -0.1)
    with pytest.raises(selection.SelectionInputError, match="not finite"):
        selection.greedy_select(np.array([0.1, np.nan, 0.2]), np.eye(3), 2, 0.1)


def _fake_candidates(enhancers: int, images: int) -> selection.Candidates:
    names = [f"img{i:02d}" for i in range(images)]
    folders = {f"model{e}": Path(f"/enhanced/model{e}") for e in range(enhancers)}
    files = {e: {n: folder / f"{n}.png" for n in names} for e, folder in folders.items()}
    return selection.Candidates(folders, names, files)


def test_eight_enhancers_give_28_pairs_of_20_images():
    """The paper's "KN(N-1)" read as K * N(N-1)/2 (docs/compare.md): 20 * 28 = 560."""
    rng = np.random.default_rng(4)
    candidates = _fake_candidates(8, 30)
    d1 = rng.uniform(0, 1, (28, 30))
    tables = selection.DistanceTables(candidates, d1, _unit_rows(rng, 30))
    rows = selection.select_pairs(tables, k=20, gamma=0.1)
    assert len(rows) == 560
    by_pair = {}
    for row in rows:
        by_pair.setdefault((row["enhancer_i"], row["enhancer_j"]), []).append(row)
    assert list(by_pair) == list(itertools.combinations(candidates.enhancers, 2))
    for picked in by_pair.values():
        assert [row["order"] for row in picked] == list(range(1, 21))
        assert len({row["image"] for row in picked}) == 20


def test_an_anchor_keeps_only_its_own_pairs_sec_v_b():
    """MS-LIQE against each of the three models that inspired it: 3 x 20 rows, the same
    picks as the full selection gives for those pairs."""
    rng = np.random.default_rng(5)
    candidates = _fake_candidates(4, 25)
    tables = selection.DistanceTables(candidates, rng.uniform(0, 1, (6, 25)), _unit_rows(rng, 25))
    everything = selection.select_pairs(tables, k=20)
    anchored = selection.select_pairs(tables, k=20, anchor="model0")
    assert len(anchored) == 3 * 20
    assert anchored == [r for r in everything if "model0" in (r["enhancer_i"], r["enhancer_j"])]
    with pytest.raises(selection.SelectionInputError, match="anchor 'nobody'"):
        selection.select_pairs(tables, k=20, anchor="nobody")


def test_an_enhancer_may_span_several_folders_but_not_repeat_a_name(layout, tmp_path):
    """The workflow's chunks: one enhancer's images in several folders."""
    first, second = tmp_path / "c000", tmp_path / "c001"
    for folder, names in ((first, PHOTOS[:2]), (second, PHOTOS[2:])):
        folder.mkdir()
        for name in names:
            source = layout / "originals" / f"{name}.png"
            (folder / f"{name}.png").write_bytes(source.read_bytes())
    enhancers = {"chunked": [first, second], "whole": layout / "originals"}
    candidates = selection.find_candidates(enhancers)
    assert candidates.names == sorted(PHOTOS)
    (second / f"{PHOTOS[0]}.png").write_bytes((first / f"{PHOTOS[0]}.png").read_bytes())
    with pytest.raises(selection.SelectionInputError, match="clash"):
        selection.find_candidates(enhancers)


class Counting:
    """Wraps a D1 metric or D2 embedding and records what passes through it."""

    def __init__(self, inner):
        self.inner, self.provenance = inner, inner.provenance
        self.seen, self.calls, self.distances = [], 0, 0

    def _record(self, images):
        self.calls += 1
        self.seen += [hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in images]

    def features(self, images):
        self._record(images)
        return self.inner.features(images)

    def distance(self, a, b):
        self.distances += 1
        return self.inner.distance(a, b)

    def embed(self, images):
        self._record(images)
        return self.inner.embed(images)


def test_each_enhanced_image_passes_through_d1_and_d2_once(layout):
    candidates = selection.find_candidates(
        selection.enhancer_folders(layout / "enhanced"), layout / "originals"
    )
    d1 = Counting(distances.MsSsimDistance())
    d2 = Counting(distances.HandcraftedEmbedding())
    tables = selection.distance_tables(candidates, d1, d2, progress=False)
    images, enhancers = len(PHOTOS), len(ENHANCERS)
    assert d1.calls == images and len(d1.seen) == len(set(d1.seen)) == images * enhancers
    assert d1.distances == images * enhancers * (enhancers - 1) // 2
    assert d2.calls == images and len(set(d2.seen)) == images
    assert tables.d1.shape == (6, images) and tables.embeddings.shape == (images, 128)
    pair = candidates.pairs.index(("blur", "noise"))
    a, b = (selection._read(candidates.files[e]["coffee"], None) for e in ("blur", "noise"))
    direct = d1.inner.distance(*d1.inner.features(torch.cat([a, b])))
    assert tables.d1[pair, candidates.names.index("coffee")] == pytest.approx(direct)


@pytest.mark.filterwarnings("ignore:.*(pretrained|weights).*:UserWarning")
def test_lpips_from_cached_features_equals_lpips_forward():
    import lpips

    torch.manual_seed(0)
    network = lpips.LPIPS(pnet_rand=True, verbose=False)
    metric = distances.LpipsDistance.from_network(network)
    a, b = photo(64, "chelsea", torch.float32)[None], photo(64, "coffee", torch.float32)[None]
    fa, fb = metric.features(torch.cat([a, b]))
    expected = float(network(a, b, normalize=True))
    assert metric.distance(fa, fb) == pytest.approx(expected, rel=1e-5)
    assert metric.distance(fb, fa) == pytest.approx(expected, rel=1e-5)
    assert metric.distance(fa, fa) == 0.0


def test_dists_from_cached_features_equals_dists_forward(monkeypatch):
    import DISTS_pytorch.DISTS_pt as dists_pt
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    random_vgg = types.SimpleNamespace(features=make_layers(cfgs["D"]))  # VGG16's layers
    monkeypatch.setattr(dists_pt.models, "vgg16", lambda pretrained: random_vgg)
    network = dists_pt.DISTS(load_weights=False)
    metric = distances.DistsDistance.from_network(network)
    a, b = photo(64, "rocket", torch.float32)[None], photo(64, "camera", torch.float32)[None]
    fa, fb = metric.features(torch.cat([a, b]))
    assert metric.distance(fa, fb) == pytest.approx(float(network(a, b)), abs=1e-6)
    assert metric.distance(fa, fa) == pytest.approx(0.0, abs=1e-6)


def test_ms_ssim_equals_pyiqa_on_luma_and_uses_fewer_scales_on_small_images():
    from pyiqa.archs.ssim_arch import ms_ssim

    metric = distances.MsSsimDistance()
    for shape in ((192, 200), (191, 193)):
        x = photo(200, "astronaut", torch.float32)[None][..., : shape[0], : shape[1]]
        y = torch.from_numpy(degradations.degrade(x[0].permute(1, 2, 0).numpy(), "blur", 1))
        fx, fy = metric.features(torch.cat([x, y.permute(2, 0, 1)[None].float()]))
        expected = float(ms_ssim(fx, fy, test_y_channel=False))
        assert 1 - metric.distance(fx, fy) == pytest.approx(expected, abs=1e-5)
    assert [metric.scales(side) for side in (11, 21, 22, 64, 175, 176, 512)] == [
        1,
        1,
        2,
        3,
        4,
        5,
        5,
    ]
    small = metric.features(photo(64, "coins", torch.float32)[None])[0]
    assert metric.distance(small, small) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 11 pixels"):
        metric.distance(small[..., :10, :10], small[..., :10, :10])


def test_handcrafted_embedding_is_unit_norm_and_nearer_for_the_same_scene():
    embedding = distances.HandcraftedEmbedding()
    clean, other = photo(64, "chelsea"), photo(64, "coffee")
    blurred = degradations.degrade(clean.permute(1, 2, 0).numpy(), "blur", 1)
    vectors = embedding.embed(
        torch.stack([clean, torch.from_numpy(blurred).permute(2, 0, 1), other])
    )
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)
    cosine_distance = 1 - vectors @ vectors.T
    assert cosine_distance[0, 1] < cosine_distance[0, 2]
    assert embedding.provenance["weights"] == "none (weight-free)"


def test_clip_embedding_with_random_vit_b32_quickgelu():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    embedding = distances.ClipEmbedding.from_network(model)
    small, large = (embedding.embed(photo(side, "rocket")[None]) for side in (64, 96))
    vectors = np.concatenate([small, large, embedding.embed(photo(64, "coins")[None])])
    assert vectors.shape == (3, 512) and embedding.size == 224
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert 1 - vectors[0] @ vectors[1] < 1 - vectors[0] @ vectors[2]  # same scene: nearer


def test_openai_clip_archive_loads_with_quickgelu(tmp_path):
    """OpenAI's file is a TorchScript archive; a tiny one in its layout loads as open_clip's
    CLIP with QuickGELU (the activation ViT-B-32-quickgelu names)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.transformer import QuickGELU

    torch.manual_seed(0)
    vision = CLIPVisionCfg(layers=1, width=64, patch_size=16, image_size=32)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1)
    model = CLIP(32, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    model._buffers.pop("attn_mask")  # OpenAI's archives hold no attention-mask buffer
    images = torch.rand(2, 3, 32, 32)
    archive = torch.jit.trace_module(model, {"encode_image": images}, check_trace=False)
    archive.save(str(tmp_path / "ViT-B-32.pt"))
    loaded = distances.load_openai_clip(tmp_path / "ViT-B-32.pt")
    assert isinstance(loaded.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    with torch.no_grad():  # OpenAI's loader rounds weights through float16
        torch.testing.assert_close(
            loaded.encode_image(images), model.encode_image(images), atol=5e-3, rtol=5e-3
        )


@pytest.mark.parametrize(
    "create, name, file_set",
    [
        (distances.create_d1, "lpips", "lpips"),
        (distances.create_d1, "dists", "dists"),
        (distances.create_d2, "clip", "clip-vit-b-32"),
    ],
)
def test_paper_distances_raise_missing_weights_in_an_empty_cache(tmp_path, create, name, file_set):
    with pytest.raises(weights.WeightsMissingError) as caught:
        create(name, cache=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert f"`dlmap weights fetch {file_set}`" in message
    assert any(part in message for part in ("alexnet-owt-7be5be79.pth", "vgg16-", "ViT-B-32.pt"))


def test_unknown_distance_name_suggests_the_nearest():
    with pytest.raises(distances.UnknownDistanceError, match="did you mean 'lpips'"):
        distances.create_d1("lpip")
    with pytest.raises(distances.UnknownDistanceError, match="known: clip, handcrafted"):
        distances.create_d2("resnet")


def _select(*argv):
    parser, handlers = build_parser("select")  # the command's parser, as `dlmap` builds it
    return handlers["select"](parser.parse_args(["select", *argv]))


def test_select_writes_k_rows_per_pair_and_the_settings(layout, tmp_path):
    out = tmp_path / "out" / "pairs.csv"
    _select(
        "--enhanced",
        str(layout / "enhanced"),
        "--originals",
        str(layout / "originals"),
        "--k",
        "3",
        "--d1",
        "ms-ssim",
        "--d2",
        "handcrafted",
        "--quiet",
        "--out",
        str(out),
    )
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(selection.CSV_COLUMNS)
    assert len(rows) == 6 * 3 and {row["order"] for row in rows} == {"1", "2", "3"}
    assert all((row["d2"] == "") == (row["order"] == "1") for row in rows)
    for row in rows:
        d2 = float(row["d2"] or 0.0)
        assert float(row["objective"]) == pytest.approx(float(row["d1"]) + 0.1 * d2)
    settings = json.loads((tmp_path / "out" / "pairs.csv.json").read_text())
    assert (settings["k"], settings["gamma"], settings["rows"], settings["pairs"]) == (
        3,
        0.1,
        18,
        6,
    )
    assert settings["d1"]["name"] == "ms-ssim" and settings["d2"]["name"] == "handcrafted"
    assert settings["d1"]["weights"] == "none (weight-free)"
    assert settings["d2_image"] == "originals" and len(settings["inputs_sha256"]) == 64
    assert list(settings["enhancers"]) == sorted(ENHANCERS)


def test_select_takes_external_enhancers_and_dlmap_enhance_folders(layout, tmp_path):
    external = tmp_path / "external"
    for name in PHOTOS:  # dlmap enhance's layout: NAME.x.png, NAME.y.png, NAME.history.png
        pixels = np.asarray(Image.open(layout / "originals" / f"{name}.png")) / 255.0
        for suffix in ("x", "y", "history"):
            _save(pixels[::-1], external / f"{name}.{suffix}.png")
    out = tmp_path / "pairs.csv"
    _select(
        "--enhanced",
        str(layout / "enhanced"),
        "--enhancer",
        f"supir={external}",
        "--k",
        "2",
        "--d1",
        "ms-ssim",
        "--d2",
        "handcrafted",
        "--quiet",
        "--out",
        str(out),
    )
    settings = json.loads(out.with_name("pairs.csv.json").read_text())
    assert list(settings["enhancers"])[-1] == "supir" and settings["rows"] == 10 * 2
    assert settings["d2_image"] == "output of enhancer 'blur' (first)"
    rows = list(csv.DictReader(open(out, newline="")))
    assert {row["file_j"] for row in rows if row["enhancer_j"] == "supir"} <= {
        str(external / f"{name}.x.png") for name in PHOTOS
    }


def test_select_refuses_bad_arguments_in_one_line(layout, tmp_path):
    enhanced, out = str(layout / "enhanced"), str(tmp_path / "pairs.csv")
    weight_free = ("--d1", "ms-ssim", "--d2", "handcrafted", "--quiet", "--out", out)
    lacking = tmp_path / "lacking"
    for name in PHOTOS[:-1]:
        _save(np.zeros((64, 64, 3)), lacking / f"{name}.png")
    small = tmp_path / "small"
    for name in PHOTOS:
        _save(np.zeros((32, 32, 3)), small / f"{name}.png")
    cases = {
        "--k 7 exceeds the 6 images": ("--enhanced", enhanced, "--k", "7"),
        "--k must be at least 1": ("--enhanced", enhanced, "--k", "0"),
        "--gamma must be a finite": ("--enhanced", enhanced, "--gamma", "-1"),
        "expected NAME=DIR": ("--enhanced", enhanced, "--enhancer", "nodir"),
        "'blur' is named twice": ("--enhanced", enhanced, "--enhancer", f"blur={lacking}"),
        "give the enhanced images": (),
        f"enhancer cut \\({lacking}\\) lacks coins": (
            "--enhanced",
            enhanced,
            "--enhancer",
            f"cut={lacking}",
        ),
        "no image for 1 of 6 candidates: coins": (
            "--enhanced",
            enhanced,
            "--originals",
            str(lacking),
        ),
        "originals: .* is not a folder": ("--enhanced", enhanced, "--originals", str(small / "x")),
        "--enhanced .* not a folder of enhancer": ("--enhanced", str(small / "x")),
        "image astronaut: the enhancers' sizes differ": (
            "--enhanced",
            enhanced,
            "--enhancer",
            f"small={small}",
        ),
        "--size: size must be an integer >= 8": ("--enhanced", enhanced, "--size", "4"),
    }
    for message, argv in cases.items():
        with pytest.raises(DlmapError, match=message) as caught:
            _select("--k", "2", *argv, *weight_free)
        assert "\n" not in str(caught.value) and caught.value.exit_code == 2  # usage or input
    assert not (tmp_path / "pairs.csv").exists()


def test_select_with_the_paper_defaults_needs_their_weights(layout, tmp_path):
    with pytest.raises(weights.WeightsMissingError, match="dlmap weights fetch lpips"):
        _select(
            "--enhanced",
            str(layout / "enhanced"),
            "--cache",
            str(tmp_path / "cache"),
            "--k",
            "3",
            "--quiet",
            "--out",
            str(tmp_path / "pairs.csv"),
        )
    assert not (tmp_path / "pairs.csv").exists()
