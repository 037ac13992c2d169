"""A bad output path (a file in the way, a symbolic-link loop) fails in one line, exit code 2,
before any model loads or any work starts: `dlmap enhance` and every other command that
writes into an output folder or file after expensive work."""

import os

import pytest
from helpers import photo_png, run_cli

FAST = ["--backbone", "tiny-seesr", "--size", "64", "--iters", "2", "--steps", "4", "--quiet"]


def _file_in_the_way(tmp_path):
    """(output path below an existing file, the file)."""
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    return blocker / "sub", blocker


def _loop(tmp_path):
    """(a symbolic-link loop a -> b -> a, its name)."""
    os.symlink("a", tmp_path / "b")
    os.symlink("b", tmp_path / "a")
    return tmp_path / "a", tmp_path / "a"


BAD_OUTPUTS = {"file-in-the-way": _file_in_the_way, "symlink-loop": _loop}


def _no_work(*_, **__):
    raise AssertionError("work started before the output path was checked")


@pytest.fixture(params=sorted(BAD_OUTPUTS))
def bad_out(request, tmp_path):
    """(a bad output folder, the path its error message must name)."""
    return BAD_OUTPUTS[request.param](tmp_path)


def _assert_one_line(code, err, named):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlmap: error: --out"), err
    assert str(named) in lines[0]
    assert "Traceback" not in err


def test_enhance_checks_out_before_loading_any_model(tmp_path, bad_out, monkeypatch, capsys):
    from dlmap.diffusion import build
    from dlmap.enhance import pipeline

    monkeypatch.setattr(build, "load_backbone", _no_work)
    monkeypatch.setattr(pipeline, "enhance_files", _no_work)
    image = photo_png(tmp_path / "in", "astronaut")
    out, named = bad_out
    code, _, err = run_cli(["enhance", image, "--out", out, *FAST], capsys)
    _assert_one_line(code, err, named)


def test_demo_checks_out_before_training_the_vae(bad_out, monkeypatch, capsys):
    from dlmap.cli import enhance as enhance_command
    from dlmap.diffusion import tiny_vae

    monkeypatch.setattr(tiny_vae, "cached_vae", _no_work)
    monkeypatch.setattr(enhance_command, "verify_vae", _no_work)
    out, named = bad_out
    code, _, err = run_cli(["demo", "--out", out, "--iters", "1", "--quiet"], capsys)
    _assert_one_line(code, err, named)


def test_train_vae_checks_out_before_training(bad_out, monkeypatch, capsys):
    from dlmap.diffusion import tiny_vae

    monkeypatch.setattr(tiny_vae, "cached_vae", _no_work)
    monkeypatch.setattr(tiny_vae, "write_trained_vae", _no_work)
    out, named = bad_out
    code, _, err = run_cli(["train-vae", "--out", out, "--steps", "1", "--quiet"], capsys)
    _assert_one_line(code, err, named)


def test_train_msliqe_checks_out_first(tmp_path, bad_out, monkeypatch, capsys):
    from dlmap.msliqe import train as msliqe_train

    monkeypatch.setattr(msliqe_train, "train", _no_work)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,mos\nx.png,0.5\n")
    out, named = bad_out
    argv = ["train-msliqe", "--manifest", manifest, "--out", out, "--quiet"]
    code, _, err = run_cli(argv, capsys)
    _assert_one_line(code, err, named)


def test_simulate_and_synthetic_check_their_folders_first(tmp_path, bad_out, monkeypatch, capsys):
    from dlmap.data import synthetic_iqa

    monkeypatch.setattr(synthetic_iqa, "make_synthetic_set", _no_work)
    out, named = bad_out
    argv = ["simulate", "--pairs", tmp_path / "pairs.csv", "--out", out, "--utilities", "u.csv"]
    _assert_one_line(*run_cli(argv, capsys)[::2], named)
    _assert_one_line(*run_cli(["data", "synthetic", "--out", out], capsys)[::2], named)


@pytest.mark.parametrize("command", ["evaluate", "score", "select", "rank", "manifest"])
def test_file_outputs_check_their_folder_before_any_work(
    command, tmp_path, bad_out, monkeypatch, capsys
):
    """--out FOLDER/x.csv with FOLDER below a file or a link loop; for the loop, --out itself
    a loop too. The prior, the distances, the counts and the data sets are never touched."""
    from dlmap.compare import distances, rank_files
    from dlmap.data import manifests
    from dlmap.priors import registry

    for module, name in (
        (registry, "create_prior"),
        (distances, "create_d1"),
        (rank_files, "rank_counts"),
        (manifests, "build_manifest"),
        (manifests, "read_manifest_resolved"),
    ):
        monkeypatch.setattr(module, name, _no_work)
    image = photo_png(tmp_path / "in", "coffee")
    folder, named = bad_out
    outs = [folder / "x.csv"] + ([folder] if folder.is_symlink() else [])
    for out in outs:
        argv = {
            "evaluate": ["evaluate", "--prior", "colorfulness", "--manifest", tmp_path / "m.csv"],
            "score": ["score", image, "--prior", "colorfulness"],
            "select": ["select", "--enhanced", tmp_path / "in", "--quiet"],
            "rank": ["rank", tmp_path / "counts.csv"],
            "manifest": ["data", "manifest", "live", "--root", tmp_path / "data"],
        }[command]
        code, _, err = run_cli([*argv, "--out", out], capsys)
        _assert_one_line(code, err, out)
