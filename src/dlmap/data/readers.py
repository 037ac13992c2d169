"""Readers of the seven IQA data sets' own score files, one function per set.

Each reader takes the set's folder and its ``DatasetSpec`` and returns one ``Record`` per
scored image, with the score as distributed; ``dlmap.data.manifests.load`` normalises them and
checks the images. Each reader's docstring states the format facts it relies on and where
they come from. ``.mat`` files are read with scipy.io.loadmat (MATLAB v5), ``.xlsx`` files
with openpyxl, ``.csv`` files with the csv module. Every problem raises ``DatasetError``
with one line naming the file (and row) and what is wrong.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

from dlmap.data.sources import DatasetError, DatasetMissingError


class Record(NamedTuple):
    """What a reader returns: image path relative to the set's folder, the score and its
    standard deviation as distributed, and the reference id ("" for authentic sets)."""

    image: str
    score: float
    std: float | None
    reference: str


# --- reading the file formats ----------------------------------------------------------------


def number(value, where: str) -> float:
    """``value`` as a finite float, or ``DatasetError`` naming ``where``."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: not a number: {value!r}") from None
    if not math.isfinite(result):
        raise DatasetError(f"{where}: not a finite number: {value!r}")
    return result


def _text(value) -> str:
    """A spreadsheet cell as text; a whole number typed as a number (CSIQ's 1600) loses .0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def score_file(folder: Path, entry) -> Path:
    """The score file ``entry`` (a name, or a tuple of alternatives) in ``folder``."""
    options = entry if isinstance(entry, tuple) else (entry,)
    for option in options:
        if (folder / option).is_file():
            return folder / option
    raise DatasetMissingError(f"missing score file {folder / options[0]}")


def _mat(path: Path, names: tuple[str, ...]) -> dict:
    """Variables of a MATLAB v5 file (scipy.io.loadmat), every one of ``names`` required."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        data = loadmat(path)
    except (MatReadError, ValueError, NotImplementedError, OSError) as error:
        raise DatasetError(f"{path}: not a readable MATLAB file: {error}") from error
    absent = [name for name in names if name not in data]
    if absent:
        present = sorted(key for key in data if not key.startswith("__"))
        raise DatasetError(f"{path}: no variable {', '.join(absent)} (has: {', '.join(present)})")
    return data


def _mat_strings(cells) -> list[str]:
    """A MATLAB cell array of strings (any shape) as a flat list of str."""
    import numpy as np

    texts = []
    for cell in cells.ravel():
        while isinstance(cell, np.ndarray):
            cell = cell.ravel()[0] if cell.size else ""
        texts.append(str(cell))
    return texts


def _table(header, rows, path: Path, columns: tuple[str, ...]) -> list[dict]:
    names = [_text(cell) if cell is not None else "" for cell in header]
    missing = [column for column in columns if column not in names]
    if missing:
        raise DatasetError(
            f"{path}: no column {', '.join(missing)} (header: {', '.join(n for n in names if n)})"
        )
    padding = (None,) * len(names)
    return [dict(zip(names, (*row, *padding), strict=False)) for row in rows]


def _xlsx(path: Path, columns: tuple[str, ...], sheet: str | None = None) -> list[dict]:
    """Rows of a spreadsheet's sheet (default: the first) below the first row, among the
    first ten, that holds all of ``columns``."""
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as error:
        raise DatasetError(f"{path}: not a readable .xlsx file: {error}") from error
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise DatasetError(f"{path}: no sheet {sheet!r} (has: {', '.join(book.sheetnames)})")
        rows = list(book[sheet or book.sheetnames[0]].iter_rows(values_only=True))
    finally:
        book.close()
    for index, row in enumerate(rows[:10]):
        if set(columns) <= {_text(cell) for cell in row if cell is not None}:
            return _table(row, rows[index + 1 :], path, columns)
    return _table(rows[0] if rows else (), [], path, columns)


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    """Rows of a CSV file with a header row that holds all of ``columns``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error, OSError) as error:
        raise DatasetError(f"{path}: not a readable CSV file: {error}") from error
    return _table(rows[0] if rows else (), rows[1:], path, columns)


# --- one reader per set ------------------------------------------------------------------------


def _read_live(folder: Path, facts) -> list[Record]:
    """LIVE release 2. ``dmos.mat`` holds ``dmos`` and ``orgs`` and ``refnames_all.mat`` holds
    ``refnames_all`` (a cell array), 982 entries each, in the order jp2k (227), jpeg (233),
    wn (174), gblur (174), fastfading (174); the k-th entry of a folder is
    ``<folder>/img<k>.bmp`` and its reference is ``refimgs/<refnames_all>``. ``orgs`` = 1
    marks copies of the references (203), which are excluded, leaving 779. Sources:
    chaofengc/IQA-PyTorch scripts/process_live.py and
    pyiqa/data/meta_info/meta_info_LIVEIQADataset.csv (jp2k/img2 is from
    studentsculpture.bmp); docs/data.md's table (DMOS about 0-100, lower is better)."""
    scores = _mat(folder / "dmos.mat", ("dmos", "orgs"))
    names = _mat_strings(_mat(folder / "refnames_all.mat", ("refnames_all",))["refnames_all"])
    dmos, orgs = scores["dmos"].ravel(), scores["orgs"].ravel()
    total = sum(count for _, count in facts.parts)
    lengths = {"dmos.mat: dmos": len(dmos), "dmos.mat: orgs": len(orgs)}
    lengths["refnames_all.mat: refnames_all"] = len(names)
    for label, length in lengths.items():
        if length != total:
            raise DatasetError(f"{folder / label}: {length} entries, expected {total}")
    records, index = [], 0
    for part, count in facts.parts:
        for k in range(1, count + 1):
            if orgs[index] not in (0, 1):
                raise DatasetError(f"{folder / 'dmos.mat'}: orgs[{index}] is {orgs[index]}")
            if orgs[index] == 0:
                score = number(dmos[index], f"{folder / 'dmos.mat'}: dmos[{index}]")
                records.append(Record(f"{part}/img{k}.bmp", score, None, names[index]))
            index += 1
    return records


_CSIQ_TYPES = {  # dst_type in csiq.DMOS.xlsx -> (folder in dst_imgs/, token in file names)
    "noise": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}


def _read_csiq(folder: Path, facts) -> list[Record]:
    """CSIQ. ``csiq.DMOS.xlsx``, sheet ``all_by_image``, columns image, dst_idx, dst_type,
    dst_lev, dmos_std, dmos (a title may stand above the header; blank rows pad it);
    distorted images are ``dst_imgs/<folder>/<image>.<TOKEN>.<dst_lev>.png`` with
    ``_CSIQ_TYPES``, references ``src_imgs/<image>.png``; DMOS in [0, 1], 1 the worst.
    Sources: zwx8981/LIQE CSIQ/splits2/csiq_all.txt (dst_imgs/awgn/shroom.AWGN.1.png,
    .../jpeg2000/x.jpeg2000.1.png, .../blur/x.BLUR.1.png); a public MATLAB converter quoting
    the sheet's columns "image dst_idx dst_type dst_lev dmos_std dmos" and its first row
    "1600 1 noise 1 0.061 0.062"; a public Python label builder for the sheet name, the
    blank rows and the type map (both found by code search, repository not shown); the
    file URLs at s2.smu.edu/~eclarson/csiq/. Not checked against the real file."""
    path = score_file(folder, facts.score_files[0])
    columns = ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos")
    records = []
    for line, row in enumerate(_xlsx(path, columns, sheet="all_by_image"), start=2):
        if row["image"] is None:
            continue
        where = f"{path} row {line}"
        kind = " ".join(str(row["dst_type"]).lower().split())
        if kind not in _CSIQ_TYPES:
            raise DatasetError(f"{where}: dst_type {kind!r} not one of {', '.join(_CSIQ_TYPES)}")
        part, token = _CSIQ_TYPES[kind]
        name, level = _text(row["image"]), int(number(row["dst_lev"], where))
        score, std = number(row["dmos"], where), number(row["dmos_std"], where)
        records.append(Record(f"dst_imgs/{part}/{name}.{token}.{level}.png", score, std, name))
    return records


def _read_bid(folder: Path, facts) -> list[Record]:
    """BID. ``DatabaseGrades.xlsx`` (first sheet) with columns "Image Number" and "Average
    Subjective Grade" (MOS 0-5, higher is better); image n is
    ``ImageDatabase/DatabaseImage%04d.JPG``. Sources: BID loaders in public IQA code
    (pd.read_excel(...)['Image Number'], ['Average Subjective Grade']; openpyxl column 1 and
    2), zwx8981/LIQE IQA_Database/BID/splits2/bid_all.txt (ImageDatabase/DatabaseImage0456.JPG)."""
    path = score_file(folder, facts.score_files[0])
    records = []
    for line, row in enumerate(_xlsx(path, ("Image Number", "Average Subjective Grade")), 2):
        if row["Image Number"] is None:
            continue
        where = f"{path} row {line}"
        image = f"ImageDatabase/DatabaseImage{int(number(row['Image Number'], where)):04d}.JPG"
        records.append(Record(image, number(row["Average Subjective Grade"], where), None, ""))
    return records


def _read_clive(folder: Path, facts) -> list[Record]:
    """LIVE Challenge. ``Data/AllImages_release.mat`` (``AllImages_release``, 1169 names),
    ``Data/AllMOS_release.mat`` (``AllMOS_release``) and ``Data/AllStdDev_release.mat``
    (``AllStdDev_release``), MOS 0-100; images in ``Images/``. The first 7 entries
    (t1.bmp-t7.bmp, in Images/trainingImages/) are the subjects' training images and are
    excluded, as pyiqa (livechallenge_dataset.py: paths_mos[7:]) and HyperIQA (imgpath[7:1169])
    do. Sources: chaofengc/IQA-PyTorch scripts/process_livechallenge.py and
    pyiqa/data/meta_info/meta_info_LIVEChallengeDataset.csv."""
    data = folder / "Data"
    names = _mat_strings(
        _mat(data / "AllImages_release.mat", ("AllImages_release",))["AllImages_release"]
    )
    mos = _mat(data / "AllMOS_release.mat", ("AllMOS_release",))["AllMOS_release"].ravel()
    std = _mat(data / "AllStdDev_release.mat", ("AllStdDev_release",))["AllStdDev_release"]
    std = std.ravel()
    if not len(names) == len(mos) == len(std):
        raise DatasetError(
            f"{data}: {len(names)} names, {len(mos)} MOS and {len(std)} standard deviations"
        )
    if len(names) < 7 or not all(name.startswith("t") for name in names[:7]):
        raise DatasetError(f"{data / 'AllImages_release.mat'}: the first 7 are not t1-t7.bmp")
    where = data / "AllMOS_release.mat"
    return [
        Record(f"Images/{name}", number(score, f"{where}: {name}"), number(sigma, name), "")
        for name, score, sigma in list(zip(names, mos, std, strict=True))[7:]
    ]


def _read_koniq10k(folder: Path, facts) -> list[Record]:
    """KonIQ-10k. ``koniq10k_scores_and_distributions.csv`` with header image_name, c1-c5,
    c_total, MOS, SD, MOS_zscore; MOS and SD on the 1-5 ACR scale (MOS_zscore is the
    0-100 rescaling, unused); images in ``1024x768/``. Sources: the header as public KonIQ
    loaders require it (code search; they read MOS_zscore, SD and 1024x768/<image_name>),
    subpic/koniq metadata/koniq10k_distributions_sets.csv (the same image names and SD),
    download scripts unpacking koniq10k_1024x768.zip into 1024x768/."""
    path = score_file(folder, facts.score_files[0])
    records = []
    for line, row in enumerate(read_csv(path, ("image_name", "MOS", "SD")), start=2):
        where = f"{path} row {line}"
        score, std = number(row["MOS"], where), number(row["SD"], where)
        records.append(Record(f"1024x768/{row['image_name']}", score, std, ""))
    return records


def _read_kadid10k(folder: Path, facts) -> list[Record]:
    """KADID-10k. ``dmos.csv`` with header dist_img, ref_img, dmos, var; images and the 81
    references in ``images/`` (I01_01_01.png from I01.png). "dmos" is a mean opinion score
    on 1-5, higher is better, despite its name (docs/data.md; KADID's page). "var" is read as a
    standard deviation: chaofengc/IQA-PyTorch scripts/process_kadid10k.py calls it std, a
    public label builder says it checked it against the raw ratings, and the first row as
    public loaders quote it (I01_01_01.png, I01.png, 4.57, 0.496) fits ratings split 57/43
    between 5 and 4, whose spread is sqrt(0.57 * 0.43) = 0.495, not 0.496 ** 0.5."""
    path = score_file(folder, facts.score_files[0])
    records = []
    for line, row in enumerate(read_csv(path, ("dist_img", "ref_img", "dmos", "var")), start=2):
        where = f"{path} row {line}"
        score, std = number(row["dmos"], where), number(row["var"], where)
        records.append(Record(f"images/{row['dist_img']}", score, std, row["ref_img"]))
    return records


def _read_spaq(folder: Path, facts) -> list[Record]:
    """SPAQ. ``Annotations/MOS and Image attribute scores.xlsx`` (first sheet) with columns
    "Image name" and "MOS" (0-100) among the attribute scores; images ``TestImage/<name>``.
    Sources: chaofengc/IQA-PyTorch scripts/process_spaq.py and meta_info_SPAQDataset.csv,
    and the unzip note of h4nwei/SPAQ (README_SPAQ_unzip_problem_and_solution.md at commit
    656d5ae, since removed from the repository's HEAD: the split zip repaired, TestImage/)."""
    path = score_file(folder, facts.score_files[0])
    records = []
    for line, row in enumerate(_xlsx(path, ("Image name", "MOS")), start=2):
        if row["Image name"] is None:
            continue
        score = number(row["MOS"], f"{path} row {line}")
        records.append(Record(f"TestImage/{_text(row['Image name'])}", score, None, ""))
    return records


READERS = {
    "live": _read_live,
    "csiq": _read_csiq,
    "bid": _read_bid,
    "clive": _read_clive,
    "koniq10k": _read_koniq10k,
    "kadid10k": _read_kadid10k,
    "spaq": _read_spaq,
}
