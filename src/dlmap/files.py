"""Writing files whole or not at all, and hashing them: the one copy every module uses.

A writer never leaves half a file under the final name: it writes a hidden temporary file in
the same folder (``.NAME.<random>.tmp``), flushes and fsyncs it, then renames it over the
target (``os.replace``, atomic on one file system); on any error the temporary file goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path


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
