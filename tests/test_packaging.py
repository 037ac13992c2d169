"""What a published package carries: its licence (with what it does not cover), how to cite
it, the typing marker, and metadata an index shows (built with setuptools' own hooks)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = dict(
    re.findall(r'^(version|license) = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
)  # the [project] table's two strings (tomllib is 3.11+)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel) of a copy of the repository's tracked files."""
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    hooks = (  # the output folder kept aside: setuptools rewrites sys.argv as it builds
        "import sys; from setuptools import build_meta as b; "
        "out = sys.argv[1]; s = b.build_sdist(out); w = b.build_wheel(out); print(f'BUILT {s} {w}')"
    )
    run = subprocess.run(
        [sys.executable, "-c", hooks, str(out)], cwd=source, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "License classifiers are deprecated" not in run.stderr
    assert "SetuptoolsDeprecationWarning" not in run.stderr, run.stderr[-3000:]
    sdist, wheel = re.search(r"^BUILT (\S+) (\S+)$", run.stdout, re.M).groups()
    return out / sdist, out / wheel


def test_the_wheel_carries_the_licence_the_typing_marker_and_the_metadata(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        licence = archive.read(info.replace("METADATA", "licenses/LICENSE")).decode()
    assert "dlmap/py.typed" in names
    assert "dlmap/weights/library_values.csv" in names  # weight URLs without the libraries
    shipped = {n for n in names if n.startswith("dlmap/diffusion/shipped_vae/")}
    assert {n.rsplit("/", 1)[1] for n in shipped} >= {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "training.json",
    }  # the demo's tiny VAE: its first run copies it instead of training
    assert "License-Expression: MIT" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Classifier: Intended Audience :: Science/Research" in metadata
    assert licence == (ROOT / "LICENSE").read_text()


def test_the_sdist_carries_the_licence_and_the_citation(built):
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in archive.getnames()}
    assert {"LICENSE", "CITATION.cff", "CHANGELOG.md", "src/dlmap/py.typed"} <= names


def test_the_licence_is_mit_and_says_what_it_does_not_cover():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and PYPROJECT["license"] == "MIT"
    assert "PolyForm Noncommercial License 1.0.0" in text  # pyiqa, the priors' code
    assert "CreativeML Open RAIL++-M" in text  # SD2's weights


def test_the_citation_names_this_version_and_the_papers_title_as_the_readme_does():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == PYPROJECT["version"]
    readme = (ROOT / "README.md").read_text()
    title = re.search(r"title\s*=\s*\{(.+)\},", readme).group(1).replace("{MAP}", "MAP")
    assert citation["preferred-citation"]["title"] == title
    authors = [a["family-names"] for a in citation["preferred-citation"]["authors"]]
    assert authors == ["Zhang", "Li", "Zhai", "Yang", "Ma"]
