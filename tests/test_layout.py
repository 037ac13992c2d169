"""The library's layout: one folder per stage, small modules, no module-level import cycle, and
light imports where they matter (the solver, every command's parser)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dlmap"
STAGES = ("diffusion", "enhance", "priors", "msliqe", "data", "compare", "experiment",
          "figures", "weights", "cli", "testing")  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """The dlmap modules a module imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & known
    return found


def test_every_stage_is_a_folder_saying_what_it_is():
    for stage in STAGES:
        init = PACKAGE / stage / "__init__.py"
        assert init.is_file(), stage
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) <= 3, (stage, doc)
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "errors.py", "files.py", "images.py", "settings.py"]


def test_modules_are_small_and_folders_hold_at_most_twelve():
    for name, path in modules().items():
        assert len(path.read_text().splitlines()) <= 400, name
    for folder in [PACKAGE, *(p for p in PACKAGE.iterdir() if p.is_dir())]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 12, folder


def test_no_module_level_import_cycle():
    found = modules()
    graph = {name: top_level_imports(path, set(found)) - {name} for name, path in found.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycle = trail[trail.index(other) :] + [other] if other in trail else [name, other]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if other not in state:
                visit(other, [*trail, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_only_imports_at_module_level_count(tmp_path):
    (tmp_path / "a.py").write_text("from dlmap.b import x\n")
    (tmp_path / "b.py").write_text("import dlmap.a\n\ndef f():\n    from dlmap import c\n")
    known = {"dlmap.a", "dlmap.b", "dlmap.c"}
    assert top_level_imports(tmp_path / "a.py", known) == {"dlmap.b"}
    assert top_level_imports(tmp_path / "b.py", known) == {"dlmap.a"}  # not the one in f


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_solver_loads_no_prior_library():
    loaded = run_python(
        "import sys, dlmap.enhance.solver\n"
        "print(' '.join(m for m in ('open_clip', 'pyiqa', 'torchvision') if m in sys.modules))"
    )
    assert loaded.strip() == ""


def test_every_commands_parser_builds_without_torch():
    """--help answers at once: no command's parser imports torch or a model library."""
    loaded = run_python(
        "import sys\n"
        "from dlmap.cli.main import COMMANDS, build_parser\n"
        "build_parser(None)\n"
        "for name in COMMANDS:\n"
        "    parser, handlers = build_parser(name)\n"
        "    assert name in handlers, name\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'pyiqa', 'open_clip', 'scipy')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))"
    )
    assert loaded.strip() == ""


def test_the_public_api_is_re_exported_lazily_from_dlmap():
    loaded = run_python(
        "import sys, dlmap\n"
        "light = 'torch' not in sys.modules\n"
        "names = dlmap.__all__\n"
        "values = [getattr(dlmap, name) for name in names]\n"
        "from dlmap import images, settings  # submodules still import by name\n"
        "print(light, len(names), all(v is not None for v in values), settings.MODES[0])"
    )
    assert loaded.split() == ["True", "15", "True", "latent-map"]
    import dlmap

    assert dlmap.create_prior is __import__("dlmap.priors.registry").priors.registry.create_prior
    try:
        dlmap.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_atomic_writes_leave_the_old_file_or_the_new_one_never_a_part(tmp_path):
    import hashlib

    import pytest

    from dlmap import files

    target = tmp_path / "out.txt"
    files.write_text_atomic("first\n", target)
    with pytest.raises(RuntimeError), files.atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "first\n" and list(tmp_path.iterdir()) == [target]
    files.write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second" and list(tmp_path.iterdir()) == [target]
    assert files.sha256_file(target, chunk=3) == hashlib.sha256(b"second").hexdigest()
    with pytest.raises(FileNotFoundError):
        files.write_text_atomic("x", tmp_path / "missing" / "out.txt")


SCIENCE_STAGES = ("diffusion", "enhance", "priors", "msliqe", "data", "compare")


def test_the_repository_stands_alone_and_every_science_stage_has_its_docs_page():
    root = PACKAGE.parents[1]
    texts = [*PACKAGE.rglob("*.py"), *(root / "docs").glob("*.md"), root / "README.md"]
    texts += [*(root / "workflow").rglob("*.py"), *(root / "workflow").rglob("*.smk")]
    for path in texts:
        text = path.read_text()
        assert "DESIGN" not in text and "../shared" not in text, path
    readme = (root / "README.md").read_text()
    for stage in SCIENCE_STAGES:
        assert (root / "docs" / f"{stage}.md").is_file(), stage
        assert f"(docs/{stage}.md)" in readme, stage  # linked from "What the paper leaves open"
    for path in texts:  # every docs/ page the code and docs point to exists
        for name in set(re.findall(r"docs/([a-z0-9-]+\.md)", path.read_text())):
            assert (root / "docs" / name).is_file(), (path, name)
