"""Checkpoints fetched from URLs: published sha256, fetch, and `dlmap weights check`."""

import hashlib
import json

import pytest
from fake_hub import FakeHost

from dlmap import settings
from dlmap.cli import main as cli
from dlmap.weights import cache as weights
from dlmap.weights import catalogue, downloads, fetching, sources
from dlmap.weights.folders import FolderSet


def _pretend(asked):
    def fetch(self, cache=None, mirrors=(), progress=True):
        asked.append(self.name)
        return fetching.FetchResult(self.name, fetching.PRESENT)

    return fetch


def test_published_sha256_is_read_from_openais_and_torchvisions_urls():
    clip, liqe = catalogue.get("liqe-mix").files()
    assert clip.published_sha256() == (
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    )
    assert liqe.published_sha256() is None  # on Hugging Face: asked from the hub at fetch
    (alexnet,) = catalogue.get("lpips").files()
    assert alexnet.published_sha256() == "7be5be79"  # torch.hub's hash-prefix convention


def test_fetch_places_the_missing_files_checks_the_hubs_sha256_and_records_them(
    tmp_path, monkeypatch
):
    (file,) = catalogue.get("musiq").files()
    with FakeHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        host.routes[file.url.removeprefix(sources.HUB)] = ("lfs", b"musiq weights", None)
        assert len(catalogue.get("musiq").missing_files(tmp_path)) == 1
        result = catalogue.get("musiq").fetch(cache=tmp_path, progress=False)
        assert result.state == fetching.FETCHED and len(host.requests) == 2  # 302, then CDN
        assert catalogue.get("musiq").missing_files(tmp_path) == []
        manifest = json.loads((tmp_path / weights.MANIFEST).read_text())
        record = manifest[str((tmp_path / file.path).resolve())]
        assert record["sha256"] == hashlib.sha256(b"musiq weights").hexdigest()
        assert record["identity"] == "published by the host"
        host.requests.clear()
        assert catalogue.get("musiq").fetch(cache=tmp_path).state == fetching.PRESENT
        assert host.requests == []  # nothing fetched twice


def test_a_download_that_differs_from_its_published_sha256_is_refused_and_removed(
    tmp_path, monkeypatch
):
    (musiq,) = catalogue.get("musiq").files()
    with FakeHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        host.routes[musiq.url.removeprefix(sources.HUB)] = ("lfs", b"not musiq", "0" * 64)
        result = catalogue.get("musiq").fetch(cache=tmp_path, progress=False)
    assert result.state == fetching.FAILED and "0" * 64 in result.attempts[0].error
    mirror = tmp_path / "lab"  # torchvision's file names the first digits of its sha256
    (alexnet,) = catalogue.get("lpips").files()
    (mirror / alexnet.path).parent.mkdir(parents=True)
    (mirror / alexnet.path).write_bytes(b"not alexnet")
    monkeypatch.setattr(sources.FixedUrl, "url", lambda self, path: "http://127.0.0.1:9/x")
    result = catalogue.get("lpips").fetch(
        cache=tmp_path / "cache", mirrors=sources.mirrors([str(mirror)]), progress=False
    )
    assert result.state == fetching.FAILED
    assert "7be5be79 is expected" in result.attempts[0].error
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))  # no .part


def test_weights_check_flags_a_file_that_differs_from_its_published_sha256(tmp_path, capsys):
    (file,) = catalogue.get("lpips").files()
    path = tmp_path / file.path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not alexnet")
    assert cli.main(["weights", "check", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "lpips: CHANGED: " in out and "7be5be79 published" in out
    assert "dists: MISSING (optional)" in out  # the same VGG16 as DBCNN's, not in the paper


def test_weights_check_passes_when_everything_the_paper_needs_is_present(
    tmp_path, capsys, monkeypatch
):
    content = b"a checkpoint"
    digest = hashlib.sha256(content).hexdigest()
    file = downloads.WeightFile(f"https://example.org/clip/models/{digest}/m.pt", "m/m.pt", "clip")
    only = downloads.FileSet("mine", "a checkpoint", lambda: (file,))
    folders = {n: e for n, e in catalogue.CATALOGUE.items() if isinstance(e, FolderSet)}
    monkeypatch.setattr(catalogue, "CATALOGUE", {**folders, "mine": only})
    for name in catalogue.backbone_sets(catalogue.PAPER_BACKBONE):
        for entry in catalogue.get(name).files:
            target = tmp_path / name / (entry[0] if isinstance(entry, tuple) else entry)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"weights")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "m.pt").write_bytes(content)
    assert cli.main(["weights", "check", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mine: present in" in out and "1 against the published sha256" in out
    assert "sd2-controlnet: MISSING (optional)" in out


def test_fetch_without_names_asks_for_everything_the_paper_needs(tmp_path, capsys, monkeypatch):
    asked = []
    for kind in (FolderSet, downloads.FileSet):
        monkeypatch.setattr(kind, "fetch", _pretend(asked))
    assert cli.main(["weights", "fetch", "--cache", str(tmp_path)]) == 0
    assert asked == catalogue.paper_sets()
    for name in ("liqe-mix", "niqe", "lpips", "clip-vit-b-32", "sd2-base", "seesr", "dape"):
        assert name in asked
    assert "dists" not in asked  # an alternative D1, fetched only by name
    assert "sd2-controlnet" not in asked  # for your own ControlNet, not the paper's


@pytest.mark.parametrize(
    "backbone, sets",
    [
        ("sd2-seesr", ["sd2-base", "seesr", "ram-swin-large", "dape"]),
        ("sd2-controlnet", ["sd2-base", "sd2-controlnet"]),
        ("sd2", ["sd2-base"]),
        ("tiny-seesr", []),
    ],
)
def test_a_backbone_fetches_and_requires_exactly_the_sets_it_loads(
    backbone, sets, tmp_path, capsys, monkeypatch
):
    asked = []
    for kind in (FolderSet, downloads.FileSet):
        monkeypatch.setattr(kind, "fetch", _pretend(asked))
    assert cli.main(["weights", "fetch", "--backbone", backbone, "--cache", str(tmp_path)]) == 0
    assert asked == sets
    code = cli.main(["weights", "check", "--backbone", backbone, "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == (1 if sets else 0)
    required = {line.split(":")[0] for line in out.splitlines() if ": MISSING: " in line}
    assert required == set(sets)


def test_every_backbone_is_in_the_catalogue_and_loads_sets_that_exist():
    for backbone in settings.BACKBONES:
        sets = catalogue.backbone_sets(backbone)
        assert all(isinstance(catalogue.get(name), FolderSet) for name in sets)
        assert (not sets) == backbone.startswith("tiny"), backbone
    folders = {name for name, entry in catalogue.CATALOGUE.items() if isinstance(entry, FolderSet)}
    assert set(settings.BackboneSettings().weight_folders()) == folders  # a --flag for each


def test_a_backbone_missing_several_sets_names_them_all_at_once(tmp_path):
    with pytest.raises(weights.WeightsMissingError) as caught:
        catalogue.locate_backbone("sd2-seesr", {}, cache=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for name in ("sd2-base", "seesr", "ram-swin-large", "dape"):
        assert str(tmp_path / name) in message


def test_fetch_sets_a_damaged_file_aside_and_brings_the_recorded_one_again(
    tmp_path, monkeypatch, capsys
):
    (file,) = catalogue.get("musiq").files()
    target = tmp_path / file.path
    with FakeHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        host.routes[file.url.removeprefix(sources.HUB)] = ("lfs", b"musiq weights", None)
        assert catalogue.get("musiq").fetch(cache=tmp_path, progress=False).ok
        target.write_bytes(b"musiq")  # truncated
        capsys.readouterr()
        result = catalogue.get("musiq").fetch(cache=tmp_path, progress=False)
    assert result.state == fetching.FETCHED, result
    assert target.read_bytes() == b"musiq weights"
    assert (tmp_path / f"{file.path}.bad").read_bytes() == b"musiq"
    assert f"{target} is damaged" in capsys.readouterr().err
    assert catalogue.get("musiq").check(tmp_path, full=True).startswith("present")
