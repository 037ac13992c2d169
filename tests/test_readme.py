"""The README's and the docs pages' commands and code stay runnable (their bash blocks are run
by .ci/run), and the README stays a page a newcomer reads in ten minutes."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_readme_opens_with_two_setup_commands_main_job_then_tests():
    block = re.search(r"<!-- setup.*?-->\n```bash\n(.*?)```", README, re.S).group(1)
    lines = block.strip().splitlines()
    assert len(lines) == 2
    assert "presets/demo.yaml" in lines[0] and "pytest" in lines[1]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "```bash" in ci and "README.md" in ci  # .ci/run executes the README's bash blocks


def test_readme_and_docs_python_examples_run():
    pages = {"README.md": README, **{f"docs/{p.name}": p.read_text() for p in DOCS}}
    ran = 0
    for name, text in pages.items():
        for block in re.findall(r"```python\n(.*?)```", text, re.S):
            if "..." in block:  # a sketch with values left out, not an example to run
                continue
            exec(compile(block, name, "exec"), {})
            ran += 1
    assert ran >= 1


def test_every_docs_page_with_commands_is_run_by_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    listed = re.search(r"for name in \((.*?)\)\)", ci, re.S).group(1)
    for page in DOCS:
        if "```bash" in page.read_text():
            assert f'"{page.stem}"' in listed, page.name


def test_the_readme_is_short_and_maps_every_stage_to_its_folder_and_page():
    assert len(README.splitlines()) <= 300
    package = ROOT / "src" / "dlmap"
    folders = [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
    assert len(folders) >= 12
    for folder in set(folders) - {"testing"}:  # testing/ is for the tests, not a stage
        assert f"| `{folder}/` |" in README, folder
    assert "## How to cite" in README and (ROOT / "CHANGELOG.md").is_file()


def test_the_cluster_procedure_runs_the_phases_in_order_and_every_command_parses(monkeypatch):
    """The step-by-step run: its snakemake lines are the phases in order (test_workflow's
    test_the_phases_plan_in_order dry-runs each) and parse with the SLURM profile; every
    dlmap line parses as the command it names."""
    import shlex

    from snakemake.cli import parse_args

    from dlmap.cli.main import build_parser
    from dlmap.workflow.phases import PHASES

    block = re.search(r"<!-- procedure.*?-->\n```sh\n(.*?)```", README, re.S).group(1)
    commands = [shlex.split(line) for line in block.splitlines() if line[:1] not in ("#", "")]
    phases = [argv[-1] for argv in commands if argv[0].endswith("snakemake") and len(argv) == 4]
    assert phases == [phase.name for phase in PHASES]
    monkeypatch.chdir(Path(__file__).parents[1])  # `--profile slurm` is ./slurm
    for argv in commands:
        if argv[0].endswith("snakemake"):
            parse_args(argv[1:])
        elif argv[0].endswith("dlmap"):
            parser, _ = build_parser(argv[1])
            parser.parse_args(argv[1:])  # an unknown command or option exits here
    assert any(argv[:3] == [".venv/bin/dlmap", "doctor", "--configfile"] for argv in commands)


def test_every_picture_the_readme_and_docs_show_is_in_the_repository():
    for page in [ROOT / "README.md", *DOCS]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).is_file(), (page.name, target)
