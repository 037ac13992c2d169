"""Property-based tests of the counts CSV that ``dlmap rank`` reads
(``dlmap.compare.counts``): whatever the input, a valid parse or a one-line ``CountsError``
(exit code 2 on the command line); never another exception."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from helpers import FUZZ
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from dlmap.cli.main import main
from dlmap.compare.counts import MAX_COUNT, CountsError, is_simulated_counts, read_counts
from dlmap.compare.observers import LABEL
from dlmap.errors import DlmapError

ROOT = Path(__file__).resolve().parents[1]


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
