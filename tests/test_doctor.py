"""`dlmap doctor`: can this machine or cluster account run a configuration? Every missing
piece listed with its step, exit 0 only when the run can start, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dlmap.cli import main as cli
from dlmap.workflow import doctor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_slurm(monkeypatch):
    """A machine without SLURM's commands, whatever this one has installed."""
    real = doctor.shutil.which
    monkeypatch.setattr(
        doctor.shutil,
        "which",
        lambda name: None if name in ("sbatch", "sinfo", "sacct") else real(name),
    )
    monkeypatch.setattr(doctor, "_gpus", lambda: [])


def _run(capsys, *args):
    code = cli.main(["doctor", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def _config(tmp_path, changes: dict, base=ROOT / "config.yaml") -> Path:
    values = yaml.safe_load(base.read_text())
    values.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    (tmp_path / "workflow").symlink_to(ROOT / "workflow")  # the schema beside the config
    return path


def test_on_a_machine_with_nothing_it_lists_every_missing_piece_and_exits_1(
    no_slurm, tmp_path, capsys
):
    code, out = _run(
        capsys,
        "--configfile",
        str(ROOT / "config.yaml"),
        "--cache",
        str(tmp_path / "cache"),
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1
    assert "[BLOCKING] this machine: no CUDA GPU visible; and no SLURM here" in out
    for name in ("seesr", "dape"):  # only a person can bring them
        assert f"[BLOCKING] {name}: missing" in out
    for name in ("sd2-base", "ram-swin-large", "liqe-mix", "niqe", "lpips", "clip-vit-b-32"):
        assert f"[missing] {name}: missing" in out  # the workflow fetches them
    for name in ("live", "clive", "bid", "spaq"):
        assert f"[BLOCKING] {name}: missing" in out
    for name in ("csiq", "koniq10k", "kadid10k"):
        assert f"[missing] {name}: missing" in out and f"dlmap data fetch {name}" in out
    assert "[ok] results/paper" not in out and "the outputs need about" in out
    assert "DLMAP_SLURM_GPU_PARTITION" in out
    assert "daclip: external enhancer daclip: no output for 500 of 500" in out
    assert "models: human study models: no exported answers" in out
    assert out.strip().splitlines()[-1].startswith("cannot start: 7 blocking problem(s)")


def test_a_gpu_too_small_for_the_batch_blocks_and_says_which_switches_help(
    no_slurm, monkeypatch, tmp_path
):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    monkeypatch.setattr(doctor, "_gpus", lambda: [("RTX 4090", 24.0)])
    costs, row = doctor.check_gpus(config)
    assert row.state == doctor.BLOCKING and "a job needs 36.7 GiB" in row.detail
    assert "batch_size" in row.todo and "checkpoint_blocks" in row.todo
    # what the numbers are for: config.yaml's are an estimate, to be measured
    assert costs.state == doctor.NOTE and "estimate for A100 80GB, float32" in costs.detail
    assert "bench/gpu_iteration.py" in costs.todo
    monkeypatch.setattr(doctor, "_gpus", lambda: [("H100", 79.6)])
    assert [r.state for r in doctor.check_gpus(config)] == [doctor.NOTE, doctor.OK]


def test_on_a_login_node_the_gpu_partitions_walltime_is_held_against_the_config(
    monkeypatch, tmp_path
):
    """A fake sinfo stands in for the cluster: its GPU partition allows 8 hours, less than
    config.yaml's 720 minutes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sinfo").write_text(
        "#!/bin/sh\necho 'cpu* 2-00:00:00 (null)'\necho 'gpu 8:00:00 gpu:a100:4'\n"
        "echo 'long 3-00:00:00 gpu:h100:8'\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DLMAP_SLURM_GPU_PARTITION", raising=False)
    monkeypatch.delenv("DLMAP_SLURM_PARTITION", raising=False)
    monkeypatch.setattr(doctor, "_gpus", lambda: [])
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    rows = {row.item: row for row in doctor.check_gpus(config)}
    assert rows["this machine"].state == doctor.NOTE  # jobs run on the GPU nodes
    assert rows["partition gpu"].state == doctor.BLOCKING
    assert "set slurm.max_runtime_minutes to 480 or less" in rows["partition gpu"].todo
    assert rows["partition long"].state == doctor.OK and "partition cpu" not in rows


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"priros": ["niqe"]}, "priros"),
        ({"chunk_size": 6.0}, "chunk_size"),
        ({"size": 8}, "config: size: 8 is less than the minimum of"),
        ({"priors": ["niqe", "sharpnes"]}, "did you mean 'sharpness'"),
        ({"slurm": {"max_runtime_minutes": 150}}, "enhance_chunk job asks for 278 minutes"),
    ],
)
def test_a_bad_config_is_one_blocking_line_naming_the_key(tmp_path, capsys, changes, words):
    code, out = _run(capsys, "--configfile", str(_config(tmp_path, changes)))
    assert code == 1
    (line,) = [x for x in out.splitlines() if "[BLOCKING]" in x]
    assert words in line


def test_an_unreadable_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: [unclosed\n")
    code, out = _run(capsys, "--configfile", str(bad))
    assert code == 1 and "cannot read it" in out
    code, out = _run(capsys, "--configfile", str(tmp_path / "nowhere.yaml"))
    assert code == 1 and "cannot read it" in out


def test_the_demo_without_downloads_can_start_here(no_slurm, tmp_path, capsys):
    config = _config(
        tmp_path,
        {"niqe_model": "fitted", "out": str(tmp_path / "out")},
        base=ROOT / "presets" / "demo.yaml",
    )
    code, out = _run(capsys, "--configfile", str(config), "--cache", str(tmp_path / "c"))
    assert code == 0 and "[ok] device: cpu: no GPU needed" in out
    assert "weights" not in out.split("\n\n")[2]  # no weight set needed at all
    assert out.strip().splitlines()[-1].startswith("the run can start: snakemake")


@pytest.mark.parametrize(
    "text, minutes",
    [
        ("30", 30),
        ("30:15", 31),
        ("12:00:00", 720),
        ("2-00:00:00", 2880),
        ("1-12", 2160),
        ("1-00:30", 1470),
        ("infinite", None),
        ("UNLIMITED", None),
        ("", None),
        ("abc", None),
    ],
)
def test_slurm_time_limits_are_read_in_every_format_sinfo_prints(text, minutes):
    assert doctor.slurm_minutes(text) == minutes


@given(st.text(max_size=20))
def test_any_time_limit_text_gives_minutes_or_none(text):
    minutes = doctor.slurm_minutes(text)
    assert minutes is None or (isinstance(minutes, int) and minutes >= 0)
