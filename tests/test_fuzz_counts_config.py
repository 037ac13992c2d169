"""Property-based tests of two parsers of outside input: the counts CSV that ``dlmap rank``
reads (``dlmap.compare.counts``), and the workflow's config (its JSON schema, then
``dlmap.workflow.config_checks`` and the request formulas of ``dlmap.workflow.budget``).

Whatever the input, the answer is a valid parse or a one-line dlmap error (``DlmapError``;
exit code 2 on the command line), or for the config a schema error naming the key; never
another exception.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dlmap.cli.main import build_parser, main
from dlmap.compare.counts import MAX_COUNT, CountsError, is_simulated_counts, read_counts
from dlmap.compare.observers import LABEL
from dlmap.data.sources import SETS
from dlmap.errors import DlmapError, InputError
from dlmap.workflow import budget, chunks
from dlmap.workflow.config_checks import check_workflow_config

ROOT = Path(__file__).resolve().parents[1]
FUZZ = {  # no example database: nothing written into the checkout
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


# --- counts files ------------------------------------------------------------------------------

ODD_CELLS = [
    "",
    " ",
    "0",
    " 7 ",
    "2.0",
    "1e1",
    "1.5",
    "-1",
    "-0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1_000",
    "\uff15",
    "0x10",
    str(10**30),
    str(2**53),
    str(2**53 + 1),
    "1e308",
    "1e400",
    "9" * 500,
    "\x00",
    "1\x00",
    '"',
    "a,b",
    "\n",
    "\u00e9",
    "\ufeff3",
]
ODD_NAMES = [
    "a",
    "b",
    "c",
    "d",
    "a ",
    " b",
    "\u00e9",
    "\u6f22",
    "\U0001d518",
    "\u200b",
    "\ufeff",
    "x\ny",
    "",
    " ",
    "\x00",
    "simulated",
    "a,b",
    '"q"',
]
CELLS = st.one_of(
    st.integers(0, 40).map(str),
    st.integers(-3, 3).map(str),
    st.sampled_from(ODD_CELLS),
    st.text(max_size=4),
)
NAMES = st.one_of(st.sampled_from(ODD_NAMES), st.text(max_size=3))


@st.composite
def csv_grids(draw) -> bytes:
    """A CSV grid near a counts file: header, rows named (mostly) as the header, cells of
    every kind; then dressed: BOM, line endings, blank lines, invalid UTF-8, NUL bytes."""
    size = draw(st.integers(0, 5))
    names = draw(st.lists(NAMES, min_size=size, max_size=size))
    label = draw(st.sampled_from(["", "condition", LABEL, "\ufeff"]))
    rows = [[label, *names]]
    for index in range(draw(st.sampled_from([size, size, size, size + 1, max(size - 1, 0)]))):
        named = names[index] if index < size and draw(st.integers(0, 5)) else draw(NAMES)
        width = draw(st.sampled_from([size, size, size, size + 1, max(size - 1, 0)]))
        cells = ["0" if j == index and draw(st.booleans()) else draw(CELLS) for j in range(width)]
        rows.append([named, *cells])
    buffer = io.StringIO()
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    csv.writer(buffer, lineterminator=ending).writerows(rows)
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = text.replace(ending, ending * draw(st.integers(2, 3)), draw(st.integers(1, 3)))
    if draw(st.booleans()):
        text = "\ufeff" + text
    data = text.encode("utf-8")
    damage = draw(st.sampled_from(["none"] * 6 + ["invalid-utf8", "nul", "cut", "latin1"]))
    if damage == "invalid-utf8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe" + data[at:]
    elif damage == "nul":
        data = data.replace(b",", b",\x00", 1)
    elif damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "latin1":
        data = text.encode("latin-1", errors="replace")
    return data


COUNTS_FILES = st.one_of(
    csv_grids(),
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda text: text.encode("utf-8", "surrogatepass")),
)


def assert_valid_counts(names, matrix, allow_empty: bool) -> None:
    """read_counts's documented invariants."""
    assert isinstance(names, list) and len(names) >= 2
    assert all(isinstance(name, str) and name and name == name.strip() for name in names)
    assert len(set(names)) == len(names)
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float64
    assert matrix.shape == (len(names), len(names))
    assert np.all(np.isfinite(matrix)) and np.all(matrix >= 0) and np.all(matrix <= MAX_COUNT)
    assert np.all(matrix == np.round(matrix))
    assert not np.any(np.diag(matrix))
    assert allow_empty or matrix.any()


def assert_one_line_error(error: BaseException, path: Path | None = None) -> None:
    message = str(error)
    assert isinstance(error, DlmapError), repr(error)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    if path is not None:
        assert str(path) in message, message


@settings(max_examples=200, **FUZZ)
@given(data=COUNTS_FILES, allow_empty=st.booleans())
@example(data="\ufeffx,a,b\r\na,0,1\r\nb,2,0\r\n".encode(), allow_empty=False)
@example(data=b"x,a,b\na,0,1\nb,2,\xff\n", allow_empty=False)
@example(data=b"x,a,b\na,0,1\x00\nb,2,0\n", allow_empty=False)
@example(data=f"x,a,b\na,0,{10**30}\nb,2,0\n".encode(), allow_empty=False)
def test_read_counts_returns_valid_counts_or_one_line_counts_error(tmp_path, data, allow_empty):
    path = tmp_path / "counts.csv"
    path.write_bytes(data)
    try:
        names, matrix = read_counts(path, allow_empty=allow_empty)
    except CountsError as error:
        assert_one_line_error(error, path)
        return
    assert_valid_counts(names, matrix, allow_empty)
    assert is_simulated_counts(path) in (True, False)


UNAMBIGUOUS_NAMES = st.text(  # printable, no blanks to strip: names read back as written
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
    min_size=1,
    max_size=6,
) | st.sampled_from(["a b", "x y z"])


@st.composite
def dressed_matrices(draw):
    """A valid counts matrix, and the bytes of a file that holds it in some dress."""
    names = draw(st.lists(UNAMBIGUOUS_NAMES, min_size=2, max_size=5, unique=True))
    size = len(names)
    counts = draw(
        st.lists(
            st.lists(
                st.sampled_from([0, 1, 2, 7, 40, MAX_COUNT]) | st.integers(0, 10**6),
                min_size=size,
                max_size=size,
            ),
            min_size=size,
            max_size=size,
        )
    )
    matrix = np.array(counts, dtype=np.float64)
    np.fill_diagonal(matrix, 0)
    assume(matrix.any())
    dress = draw(st.sampled_from(["{}", " {} ", "{}.0", "{}e0", "+{}"]))
    label = draw(st.sampled_from(["", "condition", LABEL]))
    rows = [[label, *names]] + [
        [name, *(dress.format(int(value)) for value in row)]
        for name, row in zip(names, matrix, strict=True)
    ]
    buffer = io.StringIO()
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    csv.writer(buffer, lineterminator=ending).writerows(rows)
    text = buffer.getvalue()
    if draw(st.booleans()):  # blank lines (and a line of empty cells) anywhere
        lines = text.split(ending)
        at = draw(st.integers(0, len(lines)))
        text = ending.join(lines[:at] + [draw(st.sampled_from(["", ",,", " "]))] + lines[at:])
    bom = draw(st.booleans())
    return names, matrix, label, ("\ufeff" if bom else "") + text


@settings(max_examples=150, **FUZZ)
@given(case=dressed_matrices())
def test_read_counts_reads_back_any_valid_matrix_whatever_its_dress(tmp_path, case):
    names, matrix, label, text = case
    path = tmp_path / "counts.csv"
    path.write_bytes(text.encode("utf-8"))
    read_names, read_matrix = read_counts(path)
    assert read_names == names
    np.testing.assert_array_equal(read_matrix, matrix)
    assert is_simulated_counts(path) == (label == LABEL)


def test_a_byte_order_mark_is_skipped_not_read_into_the_label_or_the_names(tmp_path):
    """Excel's "CSV UTF-8" starts the file with EF BB BF; it is not part of any cell."""
    path = tmp_path / "counts.csv"
    for text in [
        f"\ufeff{LABEL},a,b\r\na,0,1\r\nb,2,0\r\n",  # dlmap simulate's label, then Excel
        f'\ufeff"{LABEL}",a,b\na,0,1\nb,2,0\n',  # a quoted first cell
        f"\ufeff\n{LABEL},a,b\na,0,1\nb,2,0\n",  # a blank first line
    ]:
        path.write_bytes(text.encode("utf-8"))
        assert read_counts(path)[0] == ["a", "b"] and is_simulated_counts(path), text
    path.write_bytes(b"\xef\xbb\xbf,a,b\na,0,1\nb,2,0\n")
    assert read_counts(path)[0] == ["a", "b"] and not is_simulated_counts(path)


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        (str(2**53), 2.0**53),
        ("12.0", 12.0),
        ("1.2e1", 12.0),
        (str(2**53 + 1), None),
        ("9007199254740993", None),
        (str(10**30), None),
        ("1e400", None),
        ("1.00000000000000001", None),
    ],
)
def test_counts_are_exact_integers_up_to_max_count(tmp_path, cell, value):
    path = tmp_path / "counts.csv"
    path.write_text(f"x,a,b\na,0,{cell}\nb,1,0\n")
    if value is None:  # a float would round these to an integer, silently
        with pytest.raises(CountsError, match="over|not a count") as raised:
            read_counts(path)
        assert_one_line_error(raised.value, path)
    else:
        assert read_counts(path)[1][0, 1] == value


@st.composite
def rank_inputs(draw):
    """A counts file, fuzzed or valid, and maybe a per-subject folder whose files sum to it
    (or, fuzzed, do not)."""
    if draw(st.booleans()):
        return draw(COUNTS_FILES), None
    names, matrix, _, text = draw(dressed_matrices())
    if matrix.max() > 10**6 or not draw(st.booleans()):
        return text.encode("utf-8"), None
    share = np.array(draw(st.lists(st.floats(0, 1), min_size=matrix.size, max_size=matrix.size)))
    first = np.floor(matrix * share.reshape(matrix.shape))
    subjects = []
    for part in (first, matrix - first):
        rows = [["s", *names]] + [
            [n, *map(str, map(int, r))] for n, r in zip(names, part, strict=True)
        ]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        subjects.append(buffer.getvalue().encode("utf-8"))
    if draw(st.booleans()):
        subjects[draw(st.integers(0, 1))] = draw(COUNTS_FILES)
    return text.encode("utf-8"), subjects


@settings(max_examples=60, **FUZZ)
@given(case=rank_inputs())
def test_dlmap_rank_exits_0_or_2_and_never_with_a_traceback(tmp_path, capsys, case):
    data, subjects = case
    counts = tmp_path / "counts.csv"
    counts.write_bytes(data)
    out = tmp_path / "out" / "scores.csv"
    argv = ["rank", str(counts), "--out", str(out)]
    if subjects is None:
        argv += ["--bootstrap", "0"]
    else:
        folder = tmp_path / "subjects"
        folder.mkdir(exist_ok=True)
        for index, content in enumerate(subjects):
            (folder / f"s{index}.csv").write_bytes(content)
        argv += ["--per-subject", str(folder), "--bootstrap", "3"]
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code in (0, 2)
    assert "Traceback" not in captured.err + captured.out
    if code == 2:
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dlmap: error: "), captured.err
        assert not out.exists()
    else:
        assert out.is_file() and "wrote " in captured.out
        out.unlink()
    if subjects is None:  # the command succeeds exactly where the reader does
        try:
            read_counts(counts)
        except CountsError:
            assert code == 2
        else:
            assert code == 0


# --- the workflow's config ---------------------------------------------------------------------

SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
BASES = {
    name: yaml.safe_load((ROOT / name).read_text())
    for name in ("config.yaml", "presets/demo.yaml", "presets/slurm-test.yaml")
}
# The Snakefile's one check before its validate(): `if <condition>:` raises WorkflowError.
SNAKEFILE_PRECHECK = re.search(
    r"^if (.*\"encode\" in .*):$", (ROOT / "Snakefile").read_text(), re.M
).group(1)
MAX_EPOCHS = 100000  # workflow/rules/common.smk's


def snakefile_precheck(config: dict) -> None:
    """The Snakefile's condition, as written, before the schema (edict.encode has moved)."""
    if eval(SNAKEFILE_PRECHECK, {"config": config}):  # noqa: S307 (the Snakefile's own line)
        raise WorkflowError("config: edict.encode has moved")


def dataset_images(names) -> int:
    """common.smk's dataset_images."""
    from dlmap.data import synthetic_iqa

    return sum(synthetic_iqa.entry_count() if n == "synthetic" else SETS[n].count for n in names)


def msliqe_epochs(config: dict) -> int:
    """common.smk's msliqe_epochs: `dlmap train-msliqe`'s parse of msliqe.options."""
    parser, _ = build_parser("train-msliqe")
    command = ["train-msliqe", "--manifest", "m.csv", "--out", "o", *config["msliqe"]["options"]]
    try:
        epochs = parser.parse_args(command).epochs
    except SystemExit:
        raise WorkflowError("config: msliqe.options: not options of train-msliqe") from None
    if not 1 <= epochs <= MAX_EPOCHS:
        raise WorkflowError(f"config: msliqe.options: --epochs {epochs}") from None
    return epochs


def workflow_checks(config: dict) -> dict:
    """What the workflow runs on its config before any job: the Snakefile's check and
    validate() (snakemake's own), common.smk's check_workflow_config and the values it
    derives at parse time, and each GPU rule's requests (as its resources ask, on the first
    and a third attempt). Returns the requests."""
    snakefile_precheck(config)
    validate(config, str(SCHEMA_PATH))
    check_workflow_config(config, SCHEMA)
    ids = chunks.image_ids(config["images"]["count"])
    chunk_lists = chunks.chunks(config["images"]["count"], config["chunk_size"])
    assert [i for chunk in chunk_lists for i in chunk] == ids and len(chunk_lists) <= 1000
    external = {n: p.format(out=config["out"]) for n, p in config["external"].items()}
    assert all(isinstance(folder, str) for folder in external.values())
    costs = budget.GpuCosts(**config["gpu_costs"])
    requests = {
        "mem_mb": budget.host_mem_mb(costs),
        "gpu_gib": budget.gpu_gib(config["batch_size"], costs),
    }
    if config["msliqe"]["train"]:
        epochs = msliqe_epochs(config)
        datasets = config["msliqe"]["datasets"]
        per_epoch = len(datasets) * max(dataset_images([name]) for name in datasets)
    for attempt in (1, 3):
        for prior in {
            *config["priors"],
            config["ablations"]["prior"],
            config["post_enhancement"]["prior"],
        }:
            iters = {**config["solver"], **config["prior_settings"].get(prior, {})}["iters"]
            for images in {
                len(chunk_lists[0]),
                len(ids[: config["ablations"]["images"]]),
                len(ids[: config["post_enhancement"]["images"]]),
            }:
                requests[f"enhance {prior} {images} {attempt}"] = budget.enhance_job_minutes(
                    images, iters, costs, attempt
                )
        requests[f"invert {attempt}"] = budget.invert_job_minutes(len(chunk_lists[0]), costs)
        for key in ("calibration", "msliqe"):
            names = config[key]["datasets" if key == "calibration" else "evaluate_on"]
            requests[f"score {key} {attempt}"] = budget.score_job_minutes(
                dataset_images(names), costs, attempt
            )
        for name, comparison in config["comparisons"].items():
            requests[f"pairs {name} {attempt}"] = budget.pairs_job_minutes(
                len(ids), len(comparison["enhancers"]), costs, attempt
            )
        if config["msliqe"]["train"]:
            requests[f"train {attempt}"] = budget.train_job_minutes(
                per_epoch, epochs, costs, attempt
            )
    variants = [f"pixel-map-lambda{lam:g}" for lam in config["ablations"]["lambdas"]]
    assert all(variants)
    return requests


def tree_paths(node, prefix=()):
    """Every path into a config (dict keys and list indices), the root excluded."""
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in children:
        yield (*prefix, key)
        yield from tree_paths(child, (*prefix, key))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.sampled_from([0, 1, 2, 6, 999, 1001, 2**53, 2**63, 10**30, 10**400, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 6.0, 1e-300, 1e308, -1.0, float("nan"), float("inf")]),
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            "{",
            "{x}",
            "{0}",
            "{out}",
            "{out.x}",
            "a/b",
            "cuda:1",
            "bf16",
            "printed",
            "niqe",
            "koniq",
            "synthetic",
            "sample",
            "--epochs",
            "100000000",
            "-1",
            "--help",
            "line\nbreak",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def at(config, path):
    for key in path:
        config = config[key]
    return config


@st.composite
def mutated_configs(draw):
    """A preset mutated once or twice: a value replaced, a key (or list item) deleted, or an
    unknown key added; with the paths mutated."""
    config = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    changed = []
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["replace"] * 5 + ["delete", "add"]))
        if action == "add":
            mappings = [()] + [p for p in tree_paths(config) if isinstance(at(config, p), dict)]
            path = draw(st.sampled_from(mappings))
            parent = at(config, path)
            key = draw(st.text(min_size=1, max_size=8))
            while key in parent:
                key += "!"
            parent[key] = draw(VALUES)
            changed.append((*path, key))
            continue
        path = draw(st.sampled_from(list(tree_paths(config))))
        parent = at(config, path[:-1])
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        else:
            del parent[path[-1]]
            if isinstance(parent, list):  # the items after it moved: the list changed
                path = path[:-1]
        changed.append(path)
    return config, changed


def names_a_changed_key(message: str, changed) -> bool:
    keys = {str(part) for path in changed for part in path if isinstance(part, str)}
    keys |= {_dotted(path[:n]) for path in changed for n in range(1, len(path) + 1)}
    return any(key and key in message for key in keys)


def _dotted(path) -> str:
    return ".".join(str(part) for part in path)


def schema_error_is_about(error: jsonschema.ValidationError, changed) -> bool:
    """The error's place is the changed path, inside it, or its parent (a key required or
    not allowed there)."""
    at = tuple(error.absolute_path)
    return any(
        at[: len(path)] == path or (path[: len(at)] == at and len(at) >= len(path) - 1)
        for path in changed
    )


@settings(max_examples=200, **FUZZ)
@given(case=mutated_configs())
@example(case=({**copy.deepcopy(BASES["presets/demo.yaml"]), "chunk_size": 3.0}, [("chunk_size",)]))
@example(
    case=(
        {
            **copy.deepcopy(BASES["config.yaml"]),
            "msliqe": {**BASES["config.yaml"]["msliqe"], "options": ["--epochs", "100000000"]},
        },
        [("msliqe", "options")],
    )
)
def test_a_mutated_config_passes_or_fails_in_one_line_naming_the_key(case):
    config, changed = case
    try:
        requests = workflow_checks(config)
    except WorkflowError as error:  # snakemake's validate(), the Snakefile's, msliqe.options
        cause = error.__context__
        if isinstance(cause, jsonschema.ValidationError):
            assert schema_error_is_about(cause, changed), (cause.message, changed)
        else:
            assert "\n" not in str(error) and names_a_changed_key(str(error), changed), error
        return
    except InputError as error:  # check_workflow_config and the formulas
        message = str(error)
        assert "\n" not in message and message.startswith("config: "), message
        assert names_a_changed_key(message, changed), (message, changed)
        return
    for name, value in requests.items():
        assert math.isfinite(value) and value > 0, (name, value)
        assert name == "gpu_gib" or isinstance(value, int), (name, value)


@pytest.mark.parametrize("name", sorted(BASES))
def test_the_presets_pass_every_check(name):
    requests = workflow_checks(copy.deepcopy(BASES[name]))
    assert requests["mem_mb"] >= 1000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunk_size": 3.0}, "chunk_size: 3.0 is not an integer"),
        ({"images.count": 6.0}, "images.count: 6.0 is not an integer"),
        ({"solver.lam": math.inf}, "solver.lam: inf is not a finite number"),
        ({"ablations.lambdas": [10**400]}, "ablations.lambdas.0: "),
        ({"images.count": 5000, "chunk_size": 1}, "5000 chunks"),
        ({"external.unsharp": "{x}/unsharp"}, "external.unsharp"),
        ({"comparisons.msliqe.anchor": "nobody"}, "comparisons.msliqe.anchor"),
        ({"post_enhancement.bases": ["niqe"]}, "post_enhancement.bases: 'niqe'"),
        ({"msliqe.datasets": ["koniq"]}, "msliqe.datasets: unknown data set 'koniq'"),
        ({"msliqe.datasets": []}, "msliqe.datasets: names no data set"),
        ({"ranking.bootstrap": 1}, "ranking.bootstrap"),
        ({"solver.stop_score": 150.0}, "solver: stop_score must lie in"),
        (
            {"prior_settings.niqe": {"score_scale": "printed", "stop_score": 90}},
            "prior_settings.niqe (over solver): stop_score",
        ),
        ({"edict.steps_offset": 300}, "edict: steps_offset must lie in"),
        ({"memory.weights_dtype": "bf16"}, "weights_dtype bf16 needs autocast bf16"),
        ({"prior_settings.a\nb": {"lam": math.nan}}, "prior_settings.'a\\nb'.lam"),
    ],
)
def test_what_the_schema_cannot_say_is_refused_in_one_line_naming_the_key(change, message):
    config = copy.deepcopy(BASES["presets/demo.yaml"])
    for key, value in change.items():
        *parents, last = key.split(".")
        at(config, parents)[last] = value
    with pytest.raises(InputError) as raised:
        check_workflow_config(config, SCHEMA)
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert str(raised.value).startswith("config: ")


DELETE = object()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("solver.iters", 10**400),
        ("gpu_costs.host_gib", 1e308),
        ("gpu_costs.margin", 10**400),
        ("solver.seed", 2**63),
        ("images.count", 10**30),
        ("edict.steps", 1001),
        ("ranking.bootstrap", 10**9),
        ("out", "results/{x}"),
        ("solver.iters", DELETE),
        ("ablations.lambdas", DELETE),
        ("cache", DELETE),
        ("comparisons", {"a b": {"enhancers": ["niqe", "liqe"]}}),
    ],
    ids=lambda value: "delete" if value is DELETE else str(value)[:24],
)
def test_the_schema_bounds_what_would_overflow_and_requires_what_is_read(key, value):
    config = copy.deepcopy(BASES["config.yaml"])
    *parents, last = key.split(".")
    target = at(config, parents)
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    with pytest.raises(WorkflowError) as raised:
        validate(config, str(SCHEMA_PATH))
    assert schema_error_is_about(raised.value.__context__, [tuple(key.split("."))])


def test_the_request_formulas_refuse_what_overflows_in_one_line():
    for value in (10**400, math.inf, math.nan):
        with pytest.raises(InputError, match="gpu_costs.host_gib must be a positive number"):
            budget.GpuCosts(host_gib=value)
    costs = budget.GpuCosts()
    for formula in (
        lambda: budget.enhance_job_minutes(10**400, 40, costs),
        lambda: budget.train_job_minutes(10**200, 10**200, costs),
        lambda: budget.host_mem_mb(budget.GpuCosts(host_gib=1e308, margin=10.0)),
        lambda: budget.gpu_gib(10**400, costs),
    ):
        with pytest.raises(InputError, match="overflows") as raised:
            formula()
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("edict", [5, 1.5, True])
def test_the_snakefile_precheck_survives_an_edict_that_is_not_a_mapping(edict):
    config = {**copy.deepcopy(BASES["presets/demo.yaml"]), "edict": edict}
    with pytest.raises((WorkflowError, DlmapError)):
        snakefile_precheck(config)
        validate(config, str(SCHEMA_PATH))
