"""Small fake copies of the seven IQA data sets, laid out as their official archives unpack.

Each writer puts a few tiny images (PIL) and the set's own score files in their real formats
(MATLAB v5 .mat through scipy.io.savemat, .xlsx through openpyxl, .csv) under
``<root>/<name>/``, with the file names, variables, sheets, header rows and column meanings
that ``dlmap.data.readers`` documents. Only the sizes differ from the real sets:
``FAKE_FACTS`` holds the counts to patch into ``dlmap.data.sources.SETS``.

The scores are chosen so that tests can check directions: in each set the first listed
image is better than the second.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openpyxl
from PIL import Image
from scipy.io import savemat

LIVE_PARTS = (("jp2k", 4), ("jpeg", 3), ("wn", 2), ("gblur", 2), ("fastfading", 2))
LIVE_REFERENCES = ("bikes.bmp", "parrots.bmp", "studentsculpture.bmp", "womanhat.bmp")
CSIQ_REFERENCES = (1600, "shroom", "cactus", "boston", "fisher")  # 1600 is a number in Excel
CSIQ_DISTORTIONS = (("noise", 1, 1), ("jpeg 2000", 3, 2), ("contrast", 6, 1), ("blur", 5, 4))
BID_NUMBERS = (4, 7, 8, 12, 15, 456)
CLIVE_TEST = ("100.bmp", "101.bmp", "10.bmp", "1103.JPG", "787.JPG")
KONIQ_IMAGES = ("10004473376.jpg", "10007357496.jpg", "100117038.jpg", "1026198859.jpg")
CSIQ_FILES = {  # dst_type -> (folder, token), as zwx8981/LIQE's csiq_all.txt paths show
    "noise": ("awgn", "AWGN"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "contrast": ("contrast", "contrast"),
    "blur": ("blur", "BLUR"),
}
SPAQ_SIZES = {"00001.jpg": (40, 30), "00002.jpg": (30, 40), "00003.jpg": (12, 9)}


def _image(path: Path, size=(8, 6), shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade % 256, 90, 160)).save(path)


def _cells(strings, shape) -> np.ndarray:
    """A MATLAB cell array of strings for savemat."""
    cells = np.empty(len(strings), dtype=object)
    cells[:] = list(strings)
    return cells.reshape(shape)


def _xlsx(path: Path, sheets: dict[str, list[tuple]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    book.save(path)


def live(folder: Path) -> None:
    """databaserelease2/: dmos.mat (dmos, orgs: 1 x N doubles), refnames_all.mat
    (refnames_all: 1 x N cell), <part>/img<k>.bmp and info.txt, refimgs/. The last entry of
    each part is a copy of its reference (orgs = 1, DMOS 0), as in the real release."""
    dmos, orgs, refs = [], [], []
    for part, count in LIVE_PARTS:
        lines = []
        for k in range(1, count + 1):
            copy = k == count
            reference = LIVE_REFERENCES[(k - 1) % len(LIVE_REFERENCES)]
            dmos.append(0.0 if copy else 20.0 + 25.0 * (k - 1) + len(dmos))
            orgs.append(1.0 if copy else 0.0)
            refs.append(reference)
            _image(folder / part / f"img{k}.bmp", shade=len(dmos))
            lines.append(f"{reference} img{k}.bmp {0 if copy else k}")
        (folder / part / "info.txt").write_text("\n".join(lines) + "\n")
    for reference in LIVE_REFERENCES:
        _image(folder / "refimgs" / reference)
    savemat(folder / "dmos.mat", {"dmos": np.array([dmos]), "orgs": np.array([orgs])})
    savemat(folder / "refnames_all.mat", {"refnames_all": _cells(refs, (1, len(refs)))})


def csiq(folder: Path) -> None:
    """csiq.DMOS.xlsx (sheets all_by_distortion and all_by_image; columns image, dst_idx,
    dst_type, dst_lev, dmos_std, dmos; blank rows at the end), src_imgs/, dst_imgs/<type>/."""
    header = ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos")
    rows = []
    for r, image in enumerate(CSIQ_REFERENCES):
        _image(folder / "src_imgs" / f"{image}.png")
        for d, (kind, index, level) in enumerate(CSIQ_DISTORTIONS):
            part, token = CSIQ_FILES[kind]
            _image(folder / "dst_imgs" / part / f"{image}.{token}.{level}.png", shade=r + d)
            rows.append((image, index, kind, level, 0.05 + 0.01 * d, 0.1 + 0.2 * d + 0.01 * r))
    by_distortion = sorted(rows, key=lambda row: row[1])
    sheets = {"all_by_distortion": [header, *by_distortion], "all_by_image": [header, *rows]}
    sheets["all_by_image"] += [(None,) * 6, (None,) * 6]
    _xlsx(folder / "csiq.DMOS.xlsx", sheets)


def bid(folder: Path) -> None:
    """DatabaseGrades.xlsx (first sheet: Image Number, Average Subjective Grade) beside
    ImageDatabase/DatabaseImage%04d.JPG."""
    rows = [("Image Number", "Average Subjective Grade")]
    for i, number in enumerate(BID_NUMBERS):
        rows.append((number, 4.5 - 0.7 * i))
        _image(folder / "ImageDatabase" / f"DatabaseImage{number:04d}.JPG", shade=i)
    _xlsx(folder / "DatabaseGrades.xlsx", {"Plan1": rows})


def clive(folder: Path) -> None:
    """ChallengeDB_release/: Data/AllImages_release.mat (N x 1 cell), AllMOS_release.mat and
    AllStdDev_release.mat (1 x N), Images/ with the 7 training images in trainingImages/."""
    training = [f"t{i}.bmp" for i in range(1, 8)]
    for name in training:
        _image(folder / "Images" / "trainingImages" / name)
    for i, name in enumerate(CLIVE_TEST):
        _image(folder / "Images" / name, shade=i)
    names = [*training, *CLIVE_TEST]
    mos = [50.0] * 7 + [80.0 - 15.0 * i for i in range(len(CLIVE_TEST))]
    std = [18.0] * 7 + [15.0 + i for i in range(len(CLIVE_TEST))]
    data = folder / "Data"
    data.mkdir(parents=True)
    savemat(data / "AllImages_release.mat", {"AllImages_release": _cells(names, (len(names), 1))})
    savemat(data / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    savemat(data / "AllStdDev_release.mat", {"AllStdDev_release": np.array([std])})


def koniq10k(folder: Path) -> None:
    """koniq10k_scores_and_distributions.csv (quoted header image_name, c1-c5, c_total, MOS,
    SD, MOS_zscore) and 1024x768/."""
    folder.mkdir(parents=True)
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    with open(folder / "koniq10k_scores_and_distributions.csv", "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(header)
        for i, name in enumerate(KONIQ_IMAGES):
            mos = 4.2 - 0.8 * i
            writer.writerow([name, 0, 1, 20, 70, 9, 100, mos, 0.5 + 0.05 * i, 25 * (mos - 1)])
            _image(folder / "1024x768" / name, shade=i)


def kadid10k(folder: Path) -> None:
    """kadid10k/: dmos.csv (dist_img, ref_img, dmos, var) and images/ (distorted and the
    references I01.png ...)."""
    folder.mkdir(parents=True)
    with open(folder / "dmos.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dist_img", "ref_img", "dmos", "var"])
        for r in range(1, 6):
            _image(folder / "images" / f"I{r:02d}.png")
            for kind, level in ((1, 1), (1, 3), (12, 5)):
                name = f"I{r:02d}_{kind:02d}_{level:02d}.png"
                dmos = round(4.57 - 0.6 * level + 0.05 * r, 3)
                writer.writerow([name, f"I{r:02d}.png", dmos, 0.496])
                _image(folder / "images" / name, shade=r * level)


def spaq(folder: Path) -> None:
    """Annotations/MOS and Image attribute scores.xlsx (first sheet: Image name, MOS and the
    five attributes) and TestImage/."""
    header = ("Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness")
    rows = [(*header, "Sharpness")]
    for i, (name, size) in enumerate(SPAQ_SIZES.items()):
        rows.append((name, 77.25 - 30 * i, 62.38, 72.63, 65.75, 72.25, 82.71))
        _image(folder / "TestImage" / name, size=size, shade=i)
    _xlsx(folder / "Annotations" / "MOS and Image attribute scores.xlsx", {"Sheet1": rows})


WRITERS = {
    "live": live,
    "csiq": csiq,
    "bid": bid,
    "clive": clive,
    "koniq10k": koniq10k,
    "kadid10k": kadid10k,
    "spaq": spaq,
}

FAKE_FACTS = {
    "live": {"count": sum(count - 1 for _, count in LIVE_PARTS), "parts": LIVE_PARTS},
    "csiq": {"count": len(CSIQ_REFERENCES) * len(CSIQ_DISTORTIONS)},
    "bid": {"count": len(BID_NUMBERS)},
    "clive": {"count": len(CLIVE_TEST)},
    "koniq10k": {"count": len(KONIQ_IMAGES)},
    "kadid10k": {"count": 15},
    "spaq": {"count": len(SPAQ_SIZES)},
}


def write_layout(name: str, root: Path) -> Path:
    """Write the fake copy of set ``name`` into ``<root>/<name>/``; returns that folder."""
    folder = Path(root) / name
    WRITERS[name](folder)
    return folder
