"""The library's layout: one folder per stage, small modules, no module-level import cycle, and
light imports where they matter (the solver, every command's parser)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dlmap"
#: every folder of the package is a stage (or cli/testing): no list to keep in step
STAGES = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: set[str], everywhere: bool = True) -> set[str]:
    """The dlmap modules a module imports: every import statement (inside functions too, since a
    lazy import still ties two modules together), or with ``everywhere=False`` only those run
    when it is imported. Imports under ``if TYPE_CHECKING:`` never count."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for inner in ast.walk(node)}
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    found = set()
    for node in nodes:
        if id(node) in skipped:
            continue
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
    # the shared plumbing every stage uses, and `python -m dlmap`
    shared = ["errors.py", "files.py", "images.py", "progress.py", "settings.py"]
    assert top == ["__init__.py", "__main__.py", *shared]


def test_modules_are_small_and_folders_hold_at_most_twelve():
    for name, path in modules().items():
        assert len(path.read_text().splitlines()) <= 400, name
    for folder in [PACKAGE, *(p for p in PACKAGE.iterdir() if p.is_dir())]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 12, folder


# Lazy imports that may close a loop, each for a real cost it avoids: none.
ALLOWED_LOOP_EDGES: set[tuple[str, str]] = set()


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> list[str] | None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                return trail[trail.index(other) :] + [other]
            if other not in state and (found := visit(other, [*trail, other])):
                return found
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [name])):
            return found
    return None


def test_no_import_cycle_counting_imports_inside_functions():
    found = modules()
    graph = {
        name: {
            other
            for other in imports(path, set(found)) - {name}
            if (name, other) not in ALLOWED_LOOP_EDGES
        }
        for name, path in found.items()
    }
    cycle = cycle_in(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_imports_inside_functions_count_and_type_checking_ones_do_not(tmp_path):
    (tmp_path / "a.py").write_text("from dlmap.b import x\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dlmap.c\n"
        "def f():\n    from dlmap import a\n"
    )
    known = {"dlmap.a", "dlmap.b", "dlmap.c"}
    assert imports(tmp_path / "a.py", known) == {"dlmap.b"}
    assert imports(tmp_path / "b.py", known) == {"dlmap.a"}
    assert imports(tmp_path / "b.py", known, everywhere=False) == set()
    graph = {"dlmap.a": {"dlmap.b"}, "dlmap.b": {"dlmap.a"}, "dlmap.c": set()}
    assert cycle_in(graph) == ["dlmap.a", "dlmap.b", "dlmap.a"]
    assert cycle_in({"dlmap.a": {"dlmap.b"}, "dlmap.b": set()}) is None


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_settings_loads_no_torch_nor_a_model_library():
    loaded = run_python(
        "import sys, dlmap.settings\n"
        "heavy = ('torch', 'numpy', 'diffusers', 'pyiqa', 'open_clip', 'jsonschema')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))"
    )
    assert loaded.strip() == ""


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
    assert loaded.split() == ["True", "16", "True", "latent-map"]
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
