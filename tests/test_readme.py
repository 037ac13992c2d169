"""The README's commands and code stay runnable (its bash blocks are run by .ci/run)."""

import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_opens_with_two_setup_commands_main_job_then_tests():
    block = re.search(r"<!-- setup.*?-->\n```bash\n(.*?)```", README, re.S).group(1)
    lines = block.strip().splitlines()
    assert len(lines) == 2
    assert "presets/demo.yaml" in lines[0] and "pytest" in lines[1]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "```bash" in ci and "README.md" in ci  # .ci/run executes the README's bash blocks


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


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
