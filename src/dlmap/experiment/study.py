"""The study database: pairs, image hashes, subjects, their trials and answers (SQLite, WAL).

A study is created once from PAIRS.csv (``create_study``). Every selected pair becomes one
trial per repeat; ``training`` extra pairs, drawn from the same file with the study's seed,
come first. Each subject added later gets every trial in an order of their own and a random
left/right placement, both drawn from a per-subject seed that is stored with the subject.

Tables: ``meta`` (key/value: seed, pairs-file hash, images folder, ...), ``images`` (path
relative to the images folder, sha256, size), ``pairs`` (one row per PAIRS.csv row),
``subjects`` (name, private token, seed), ``trials`` (subject, position, pair, training flag,
which enhancer is on the left) and ``answers`` (at most one per trial: the primary key).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import secrets
import sqlite3
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dlmap.errors import InputError
from dlmap.files import sha256_file

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY, row INTEGER NOT NULL, enhancer_i TEXT NOT NULL,
    enhancer_j TEXT NOT NULL, image TEXT NOT NULL,
    image_i INTEGER NOT NULL REFERENCES images(id),
    image_j INTEGER NOT NULL REFERENCES images(id), training INTEGER NOT NULL);
CREATE TABLE subjects (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL UNIQUE,
    seed INTEGER NOT NULL, created TEXT NOT NULL);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY, subject INTEGER NOT NULL REFERENCES subjects(id),
    position INTEGER NOT NULL, pair INTEGER NOT NULL REFERENCES pairs(id),
    training INTEGER NOT NULL, swapped INTEGER NOT NULL, UNIQUE (subject, position));
CREATE TABLE answers (
    trial INTEGER PRIMARY KEY REFERENCES trials(id), chosen TEXT NOT NULL,
    response_ms REAL NOT NULL, shown_at TEXT NOT NULL, answered_at TEXT NOT NULL,
    received_at TEXT NOT NULL, screen_width INTEGER NOT NULL, screen_height INTEGER NOT NULL,
    device_pixel_ratio REAL NOT NULL, zoom REAL NOT NULL, window_width INTEGER NOT NULL,
    window_height INTEGER NOT NULL, input TEXT NOT NULL);
"""
PAIRS_COLUMNS = ("enhancer_i", "enhancer_j", "image", "file_i", "file_j")
MAX_NAME_LENGTH = 100
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
FORMULA_STARTS = ("=", "+", "-", "@")  # what a spreadsheet reads as the start of a formula


class StudyError(InputError):
    """A bad study input (pairs file, images folder, database); the message names it."""


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(db: Path) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit off-switched (we BEGIN explicitly), waiting up to
    10 s for a writer lock, fsyncing every commit."""
    connection = sqlite3.connect(db, timeout=10.0, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def open_study(db: Path) -> sqlite3.Connection:
    """Connect to an existing study; StudyError if ``db`` is not one. The file's header is
    read before SQLite sees it, so a file that is not a database (an empty one included) is
    refused unchanged, never turned into an empty database."""
    db = Path(db)
    try:
        with open(db, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise StudyError(
            f"{db}: no such study database (create it with `experiment create`)"
        ) from None
    except OSError as error:
        raise StudyError(f"{db}: not readable as a study database ({error.strerror})") from None
    if header != SQLITE_HEADER:
        raise StudyError(f"{db}: not a dlmap study database (not an SQLite file)")
    try:
        connection = connect(db)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as error:
        raise StudyError(f"{db}: not a usable study database ({error})") from None
    if not {"meta", "images", "pairs", "subjects", "trials", "answers"} <= tables:
        connection.close()
        raise StudyError(f"{db}: not a dlmap study database (no study tables)")
    return connection


def meta(connection: sqlite3.Connection) -> dict:
    return {
        row["key"]: json.loads(row["value"]) for row in connection.execute("SELECT * FROM meta")
    }


def _inside(images_dir: Path, text: str, pairs: Path, line: int) -> Path:
    """The image file ``text``, which must lie inside ``images_dir`` and exist. A relative
    path resolves against ``images_dir``, or, if no such file is there, against the working
    directory (``dlmap select`` writes the paths it was given)."""
    path = Path(text)
    try:
        resolved = (path if path.is_absolute() else images_dir / path).resolve()
        if not path.is_absolute() and not resolved.is_file() and path.resolve().is_file():
            resolved = path.resolve()
    except (OSError, RuntimeError) as error:  # a symbolic-link loop, a name too long
        raise StudyError(f"{pairs}: line {line}: {text}: not a usable path ({error})") from None
    if not resolved.is_relative_to(images_dir):
        raise StudyError(
            f"{pairs}: line {line}: {text} lies outside the images folder {images_dir} "
            "(the study serves only files inside --images)"
        )
    if not resolved.is_file():
        raise StudyError(f"{pairs}: line {line}: no such image file {resolved}")
    return resolved


def read_pairs(pairs: Path, images_dir: Path) -> list[dict]:
    """The rows of PAIRS.csv with ``path_i``/``path_j`` resolved inside ``images_dir``."""
    try:
        with open(pairs, newline="", encoding="utf-8-sig") as handle:  # a BOM is not a name
            reader = csv.DictReader(handle)
            missing = [c for c in PAIRS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise StudyError(f"{pairs}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise StudyError(f"{pairs}: not a readable pairs CSV ({error})") from error
    if not rows:
        raise StudyError(f"{pairs}: holds no pair")
    for line, row in enumerate(rows, start=2):
        if None in row or any(row[column] is None for column in PAIRS_COLUMNS):
            raise StudyError(f"{pairs}: line {line}: not as many cells as the header has")
        if row["enhancer_i"] == row["enhancer_j"] or not row["enhancer_i"] or not row["image"]:
            raise StudyError(f"{pairs}: line {line}: needs two different enhancers and an image")
        for column in ("enhancer_i", "enhancer_j", "image"):
            problem = text_problem(row[column])
            if problem:
                raise StudyError(f"{pairs}: line {line}: {column} {row[column]!r} {problem}")
        if not row["file_i"] or not row["file_j"]:
            raise StudyError(f"{pairs}: line {line}: file_i and file_j must name image files")
        row["path_i"] = _inside(images_dir, row["file_i"], pairs, line)
        row["path_j"] = _inside(images_dir, row["file_j"], pairs, line)
        if row["path_i"] == row["path_j"]:
            raise StudyError(
                f"{pairs}: line {line}: the same image {row['file_i']} on both "
                "sides (a pair compares two different images)"
            )
    return rows


def text_problem(text: str) -> str | None:
    """Why ``text`` (a name that ends up in exported CSV files) is refused, or None: control
    or format characters (NUL, newlines, bidirectional overrides) or, since a spreadsheet
    runs such a cell as a formula, a first character among ``= + - @``."""
    for character in text:
        if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            return f"contains the control character U+{ord(character):04X}"
    if text.startswith(FORMULA_STARTS):
        return f"begins with {text[0]!r} (a spreadsheet would run it as a formula)"
    return None


def create_study(
    db: Path, pairs: Path, images_dir: Path, training: int = 5, repeats: int = 1, seed: int = 0
) -> dict:
    """Build the study database ``db`` (which must not exist yet); returns its meta values."""
    db, pairs = Path(db), Path(pairs)
    images_dir = Path(images_dir).resolve()
    if db.exists() or db.is_symlink():
        raise StudyError(f"{db}: exists already (a study is never overwritten; pick a new name)")
    if not db.parent.is_dir():
        raise StudyError(f"--db {db}: the folder {db.parent} does not exist (create it first)")
    if not images_dir.is_dir():
        raise StudyError(f"--images {images_dir}: not a folder")
    if training < 0 or repeats < 1:
        raise StudyError(f"--training must be >= 0 and --repeats >= 1 (got {training}, {repeats})")
    rows = read_pairs(pairs, images_dir)
    if training > len(rows):
        raise StudyError(f"--training {training}: the pairs file has only {len(rows)} pairs")
    image_ids: dict[Path, int] = {}
    image_rows = []
    for row in rows:
        for path in (row["path_i"], row["path_j"]):
            if path not in image_ids:
                image_ids[path] = len(image_ids) + 1
                width, height = _image_size(path)
                relative = path.relative_to(images_dir).as_posix()
                image_rows.append((image_ids[path], relative, sha256_file(path), width, height))
    training_rows = sorted(random.Random(seed).sample(range(len(rows)), training))
    values = {
        "format": 1,
        "created": now(),
        "pairs_file": str(pairs.resolve()),
        "pairs_sha256": sha256_file(pairs),
        "images_dir": str(images_dir),
        "training": training,
        "repeats": repeats,
        "seed": seed,
        "conditions": sorted({r["enhancer_i"] for r in rows} | {r["enhancer_j"] for r in rows}),
    }
    sidecar = pairs.with_name(pairs.name + ".json")
    if sidecar.is_file():
        values["pairs_sidecar_sha256"] = sha256_file(sidecar)
    connection = connect(db)
    try:
        connection.execute("BEGIN")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?)", image_rows)
        pair_rows = []
        for index, row in enumerate(rows):
            common = (row["enhancer_i"], row["enhancer_j"], row["image"])
            ids = (image_ids[row["path_i"]], image_ids[row["path_j"]])
            pair_rows.append((index + 1, *common, *ids, 0))
        for index in training_rows:
            pair_rows.append((index + 1, *pair_rows[index][1:6], 1))
        connection.executemany(
            "INSERT INTO pairs (row, enhancer_i, enhancer_j, image, image_i, image_j, training)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            pair_rows,
        )
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.close()
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
        raise
    connection.close()
    return values


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image file ``path``; StudyError if it is not an image."""
    try:
        with Image.open(path) as image:
            image.verify()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise StudyError(f"{path}: not a readable image ({error})") from None


def subject_name(name: str) -> str:
    """``name`` as stored: stripped, in Unicode normal form NFC (so "René" typed either way
    is one subject); StudyError if it is empty, too long, holds control characters or
    begins like a spreadsheet formula."""
    if not isinstance(name, str):
        raise StudyError(f"a subject name must be text, got {type(name).__name__}")
    name = unicodedata.normalize("NFC", name.strip())
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StudyError(f"a subject name needs 1 to {MAX_NAME_LENGTH} characters: {name!r}")
    problem = text_problem(name)
    if problem:
        raise StudyError(f"subject name {name!r} {problem}")
    return name


def subject_seed(study_seed: int, name: str) -> int:
    """The seed of one subject's trial order and placement, derived from the study's seed."""
    return int.from_bytes(hashlib.sha256(f"{study_seed}\t{name}".encode()).digest()[:6], "big")


def add_subject(connection: sqlite3.Connection, name: str) -> dict:
    """Add a subject with a private token and their own trial sequence: the training pairs in
    a shuffled order, then every pair ``repeats`` times, shuffled; left/right drawn per trial."""
    name = subject_name(name)
    values = meta(connection)
    seed = subject_seed(values["seed"], name)
    rng = random.Random(seed)
    pairs = connection.execute("SELECT id, training FROM pairs ORDER BY id").fetchall()
    training = [row["id"] for row in pairs if row["training"]]
    trials = [row["id"] for row in pairs if not row["training"]] * values["repeats"]
    rng.shuffle(training)
    rng.shuffle(trials)
    sequence = [(pair, 1) for pair in training] + [(pair, 0) for pair in trials]
    token = secrets.token_urlsafe(24)
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("SELECT 1 FROM subjects WHERE name = ?", (name,)).fetchone():
            raise StudyError(f"a subject named {name!r} exists already")
        cursor = connection.execute(
            "INSERT INTO subjects (name, token, seed, created) VALUES (?, ?, ?, ?)",
            (name, token, seed, now()),
        )
        subject = cursor.lastrowid
        connection.executemany(
            "INSERT INTO trials (subject, position, pair, training, swapped)"
            " VALUES (?, ?, ?, ?, ?)",
            [(subject, i, pair, t, rng.random() < 0.5) for i, (pair, t) in enumerate(sequence)],
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return {"id": subject, "name": name, "token": token, "seed": seed, "trials": len(sequence)}


def progress(connection: sqlite3.Connection) -> list[dict]:
    """Per subject: name, token, answered and total trials (training included)."""
    rows = connection.execute(
        "SELECT s.id, s.name, s.token, COUNT(t.id) AS total, COUNT(a.trial) AS answered"
        " FROM subjects s LEFT JOIN trials t ON t.subject = s.id"
        " LEFT JOIN answers a ON a.trial = t.id GROUP BY s.id ORDER BY s.id"
    )
    return [dict(row) for row in rows]


def verify_study(connection: sqlite3.Connection) -> None:
    """StudyError naming the first thing changed since the study was created: the pairs file
    (missing or another sha256) or an image (missing or another sha256)."""
    values = meta(connection)
    pairs = Path(values["pairs_file"])
    if not pairs.is_file():
        raise StudyError(
            f"the study's pairs file {pairs} is missing; its answers cannot be "
            "checked against the pairs (restore it)"
        )
    if sha256_file(pairs) != values["pairs_sha256"]:
        raise StudyError(
            f"the study's pairs file {pairs} changed since the study was created "
            f"(sha256 {values['pairs_sha256'][:12]} then, {sha256_file(pairs)[:12]}"
            " now); the answers do not belong to its pairs"
        )
    changed = verify_images(connection)
    if changed:
        raise StudyError(
            f"{len(changed)} image(s) changed or missing since the study was "
            f"created (first: {Path(values['images_dir']) / changed[0]}); the "
            "answers would not match the images"
        )


def verify_images(connection: sqlite3.Connection) -> list[str]:
    """The images whose file is missing or whose sha256 no longer matches the study's."""
    folder = Path(meta(connection)["images_dir"])
    changed = []
    for row in connection.execute("SELECT path, sha256 FROM images ORDER BY id"):
        path = folder / row["path"]
        if not path.is_file() or sha256_file(path) != row["sha256"]:
            changed.append(row["path"])
    return changed
