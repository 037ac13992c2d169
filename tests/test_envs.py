"""The jobs' software: envs/jobs.yaml (each rule's `conda:`) and the container recipes built
from the same pins (envs/dlmap.def, envs/Dockerfile)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
JOBS_ENV = ROOT / "envs" / "jobs.yaml"
# How both container recipes read the pins out of envs/jobs.yaml (before anything that could
# parse YAML is installed): the pip list's entries, indented six spaces.
EXTRACT = r"sed -n 's/^      - //p' "


def pins() -> dict[str, str]:
    env = yaml.safe_load(JOBS_ENV.read_text())
    (pip,) = [entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict)]
    found = {}
    for line in pip:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line}: pin exactly (name==version)"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def test_every_runtime_dependency_is_pinned_within_the_declared_range():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name.startswith("snakemake"):  # runs the jobs; Snakemake brings itself to them
            assert name not in pinned, name
            continue
        assert name in pinned, f"{name} is a dependency but envs/jobs.yaml does not pin it"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} is outside pyproject's {requirement.specifier}"
        )
    assert "torchvision" in pinned  # pyiqa needs it; torch's build must match it


def test_both_container_recipes_install_exactly_the_jobs_pins():
    extracted = subprocess.run(
        ["bash", "-c", EXTRACT + str(JOBS_ENV)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {canonicalize_name(Requirement(line).name) for line in extracted} == set(pins())
    assert len(extracted) == len(pins())
    for recipe in ("dlmap.def", "Dockerfile"):
        text = (ROOT / "envs" / recipe).read_text()
        assert EXTRACT + "/opt/dlmap/envs/jobs.yaml" in text, recipe
        assert "pip install --no-cache-dir -r /opt/dlmap/pins.txt" in text, recipe
        copied = re.findall(r"^\s+(\S+) /opt/dlmap/", text, re.M)  # .def's %files
        copied += [
            p for line in re.findall(r"^COPY (.+) /opt/dlmap/", text, re.M) for p in line.split()
        ]
        assert "envs/jobs.yaml" in copied and "src" in copied, recipe
        for path in copied:
            assert (ROOT / path).exists(), f"{recipe} copies {path}, which is not in the repository"


def test_every_rule_that_runs_something_names_the_jobs_env():
    checked = 0
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^\s*rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            if re.search(r"^\s+(shell|script):", block, re.M):
                checked += 1
                assert re.search(r'^\s+conda:\s+"\.\./\.\./envs/jobs\.yaml"', block, re.M), (
                    f"{smk.name}: rule {name} runs a command without conda: envs/jobs.yaml"
                )
            assert not re.search(r"^\s+run:", block, re.M), f"{name}: a run: block has no env"
    assert checked >= 30


def test_the_snakefile_names_the_container_of_the_config():
    text = (ROOT / "Snakefile").read_text()
    assert 'container: config.get("container", "dlmap.sif")' in text
    assert yaml.safe_load((ROOT / "config.yaml").read_text())["container"] == "dlmap.sif"


@pytest.mark.pins
def test_the_pins_resolve_on_pypi(tmp_path):
    """pip's resolver, nothing installed: every pin resolves together with its dependencies."""
    requirements = tmp_path / "pins.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in pins().items()))
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        + ["--report", str(report), "-r", str(requirements)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    chosen = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for name, version in pins().items():
        assert chosen.get(name) == version, (name, version, chosen.get(name))
    print(f"{len(pins())} pins resolve to {len(chosen)} packages")
