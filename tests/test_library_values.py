"""The shipped table of weight URLs read from the libraries' constants (dlmap.weights.downloads
.LIBRARY_VALUES): every row is what the installed library says, every set's listing finds its
rows without importing a library, and so the workflow's DAG is built without torch."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlmap.priors import specs
from dlmap.weights import catalogue, downloads

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pyiqa", "timm", "torchvision", "diffusers", "open_clip", "transformers")


def test_every_recorded_value_is_the_installed_librarys():
    rows = downloads.library_values()
    assert {library for library, _ in rows} == set(downloads.LOOKUPS)
    stale = {
        key: (value, downloads.LOOKUPS[key[0]](key[1]))
        for key, value in rows.items()
        if downloads.LOOKUPS[key[0]](key[1]) != value
    }
    assert not stale, f"update {downloads.LIBRARY_VALUES.name}: (recorded, now) {stale}"


def test_listing_every_weight_set_reads_the_table_alone(monkeypatch):
    def imported(*args):
        raise AssertionError(f"a lookup outside {downloads.LIBRARY_VALUES.name}: {args}")

    for name in ("_pyiqa_url", "_torchvision_url", "_clip_url", "_timm_repo"):
        monkeypatch.setattr(downloads, name, imported)
    listed = 0
    for name in catalogue.names():
        entry = catalogue.get(name)
        if callable(getattr(entry, "files", None)):
            listed += len(entry.files())
    for spec in specs.PRIOR_SPECS.values():
        if spec.file_set():
            listed += len(spec.file_set().files())
    assert listed > 20


@pytest.mark.parametrize("configfile", ["config.yaml", "presets/modern.yaml"])
def test_building_the_dag_imports_no_heavy_library(configfile, tmp_path):
    """snakemake -n of the paper's config and the modern preset (pyiqa:NAME priors): every
    job on SLURM parses the workflow again, so the parse must stay light."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
        + ["-n", "--quiet", "rules", "--configfile", str(ROOT / configfile)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", run.stderr, re.M))
    assert "dlmap.workflow.plan" in imported  # the parse ran and was recorded
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
