"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import pathlib


def write_atomically(path: str | os.PathLike, content: str | bytes) -> pathlib.Path:
    """Writes ``content`` to ``path`` through a temporary file in the same folder and an atomic
    rename: a reader (or a run killed mid-way) sees the old file or the new one, never a part."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
