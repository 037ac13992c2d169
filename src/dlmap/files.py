"""Writing files whole or not at all, and hashing them: the one copy every module uses.

A writer never leaves half a file under the final name: it writes a hidden temporary file in
the same folder (``.NAME.<random>.tmp``), flushes and fsyncs it, then renames it over the
target (``os.replace``, atomic on one file system); on any error the temporary file goes.
``check_output_folder`` and ``check_output_file`` vet a command's output path before any work.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import shutil
import stat
import uuid
from pathlib import Path

from dlmap.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` for a writer that needs a file name (torch.save,
    scipy.io.savemat); on success it is fsynced and renamed to ``path``, else removed."""
    final = Path(path)
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (permissions as ``open`` gives)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` whole or not at all."""
    write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24, progress=None) -> str:
    """The sha256 of a file, read in chunks (``progress``: a tqdm bar to advance by bytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            if progress is not None:
                progress.update(len(block))
    return digest.hexdigest()


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` if it can serve as an output folder: an existing folder we may write in, or a
    new one whose nearest existing ancestor is such a folder. Checked before any work, so a
    bad ``--out`` fails in one line instead of after the models load; raises ``InputError``
    naming ``option`` (a file in the way, a symbolic-link loop, no permission)."""
    path = Path(path)
    for candidate in (path, *path.parents):
        try:
            status = os.stat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue  # the ancestor that is in the way is named next
        except OSError as error:  # ELOOP, EACCES on the way
            reason = error.strerror or type(error).__name__
            raise InputError(f"{option} {path}: not usable as a folder ({reason})") from None
        if not stat.S_ISDIR(status.st_mode):
            where = (
                "exists and is not a folder"
                if candidate == path
                else (f"{candidate} is a file, not a folder")
            )
            raise InputError(f"{option} {path}: {where}")
        if not os.access(candidate, os.W_OK | os.X_OK):
            raise InputError(f"{option} {path}: no permission to write in {candidate}")
        return path
    return path


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` if a command may write the file there, checked before any work: not a folder
    nor a symbolic-link loop itself, in a folder ``check_output_folder`` accepts
    (which may not exist yet: the writer creates it). Raises ``InputError`` naming ``option``
    and ``path``."""
    path = Path(path)
    try:
        is_folder = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        is_folder = False  # a new file, or a file in the way above it (named next)
    except OSError as error:  # ELOOP, EACCES
        reason = error.strerror or type(error).__name__
        raise InputError(f"{option} {path}: not usable as a file ({reason})") from None
    if is_folder:
        raise InputError(f"{option} {path}: is a folder; give the file to write")
    check_output_folder(path.parent, f"{option} {path}: its folder")
    return path


def csv_text(rows, columns=None, **options) -> str:
    """Rows of dicts as CSV text with "\n" line ends (``columns``: the first row's keys unless
    given; ``options``: ``csv.DictWriter``'s, e.g. ``extrasaction="ignore"``)."""
    rows = list(rows)
    fields = list(columns) if columns is not None else list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", **options)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_rows(rows, path: str | os.PathLike, columns=None, **options) -> None:
    """``csv_text`` of the rows, written atomically to ``path`` (the one CSV writer)."""
    write_text_atomic(csv_text(rows, columns, **options), path)


# --- work in progress beside its target: .NAME.PID.part ---------------------------------------


def partial_path(target: str | os.PathLike) -> Path:
    """Where this process writes ``target`` before renaming it into place: a hidden
    ``.NAME.PID.part`` beside it, after removing the ones of processes that were killed
    (``remove_stale_parts``), so that a kill leaves nothing behind for long."""
    target = Path(target)
    remove_stale_parts(target)
    return target.with_name(f".{target.name}.{os.getpid()}.part")


def remove_stale_parts(target: str | os.PathLike) -> list[Path]:
    """Remove the ``.NAME.PID.part`` files or folders of ``target`` whose process is gone
    (one on this machine: a part being written by another host's process with the same
    PID would be left alone only by chance, so give each host its own cache folder)."""
    target, removed = Path(target), []
    for part in target.parent.glob(f".{target.name}.*.part"):
        pid = part.name[len(target.name) + 2 : -len(".part")]
        if pid.isdigit() and not _alive(int(pid)):
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)
            else:
                part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# --- a folder's digests: SHA256SUMS, in the format `sha256sum -c` reads -------------------------

MANIFEST = "SHA256SUMS"
"""The digest manifest of a finished output folder: one ``HEX  NAME`` line per file (NAME
relative to the folder, "/"-separated), so ``cd FOLDER && sha256sum -c SHA256SUMS`` checks it
too."""


def folder_files(folder: str | os.PathLike) -> list[str]:
    """Every regular file under ``folder`` (relative, "/"-separated, sorted), without the
    manifest, the hidden ``.NAME.*.tmp``/``.part`` of a writer at work or killed, and names
    a manifest line cannot hold (a line break or a backslash in them)."""
    folder = Path(folder)
    names = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return sorted(name for name in names if name != MANIFEST and _listable(name))


def _listable(name: str) -> bool:
    """Whether a manifest may list ``name``: one line, no backslash, and no part of it the
    hidden work of a writer (``.NAME.*.tmp``, ``.NAME.*.part``)."""
    parts = name.split("/")
    at_work = any(p.startswith(".") and p.endswith((".tmp", ".part")) for p in parts)
    return name.splitlines() == [name] and "\\" not in name and not at_work


def write_manifest(folder: str | os.PathLike, names=None) -> Path:
    """Write ``folder/SHA256SUMS`` (atomically): the digests of ``names`` (default every file,
    ``folder_files``). Given ``names``, the entries of other files that still exist are kept,
    so that a command adding files to a folder updates its manifest."""
    folder = Path(folder)
    entries = {}
    if names is not None:
        try:
            entries = {n: d for n, d in read_manifest(folder).items() if (folder / n).is_file()}
        except InputError:  # an unreadable manifest is replaced by the files' digests
            entries = {}
    for name in folder_files(folder) if names is None else names:
        if _listable(Path(name).as_posix()):
            entries[Path(name).as_posix()] = sha256_file(folder / name)
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
    write_text_atomic(lines, folder / MANIFEST)
    return folder / MANIFEST


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """``{name: sha256}`` from ``folder/SHA256SUMS`` ({} when there is none); raises
    ``InputError`` naming the line that is not ``HEX  NAME`` with a name inside the folder."""
    path = Path(folder) / MANIFEST
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: unreadable ({error})") from None
    entries = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, mode, name = line[:64], line[64:66], line[66:]  # mode " *": binary
        if (
            len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
            or mode not in ("  ", " *")
            or not name
            or name.startswith("/")
            or ".." in name.split("/")
            or "\\" in name
            or name in entries
        ):
            raise InputError(f"{path}: line {number} is not 'SHA256  NAME' of a file inside")
        entries[name] = digest
    if text and not text.endswith("\n"):
        raise InputError(f"{path}: cut short (its last line has no end)")
    return entries


def manifest_problems(folder: str | os.PathLike) -> list[tuple[Path, str]] | None:
    """None when ``folder`` has no manifest; else one ``(path, what is wrong)`` per listed file
    that is missing or whose digest changed since it was written ([] when all are whole). An
    unreadable manifest is a problem of its own (its path, the reason)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return None
    try:
        entries = read_manifest(folder)
    except InputError as error:
        return [(folder / MANIFEST, str(error).removeprefix(f"{folder / MANIFEST}: "))]
    problems = []
    for name, digest in entries.items():
        path = folder / name
        if not path.is_file():
            problems.append((path, "missing"))
        elif sha256_file(path) != digest:
            problems.append(
                (path, f"changed since it was written (sha256 differs from {MANIFEST})")
            )
    return problems
