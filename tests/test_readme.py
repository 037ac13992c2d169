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
