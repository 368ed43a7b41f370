"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import tempfile


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


def json_values(value):
    """``value`` with every non-finite float as None (strict JSON has no NaN), numpy scalars
    as Python numbers, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): json_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_values(v) for v in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_json_atomically(path: str | os.PathLike, payload) -> pathlib.Path:
    """``payload`` as strict JSON (NaN -> null), written atomically."""
    return write_atomically(path, json.dumps(json_values(payload), indent=2, allow_nan=False))


def staging_folder(output_dir: pathlib.Path, kind: str) -> pathlib.Path:
    """A fresh folder inside ``output_dir`` to write a run's outputs into before
    :func:`move_outputs_in` (those a killed run left are removed first)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(f".{kind}-staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=f".{kind}-staging-", dir=output_dir))


def move_outputs_in(staging: pathlib.Path, output_dir: pathlib.Path, owned: list[str],
                    last: list[str]) -> None:
    """Replaces the earlier outputs ``owned`` (paths relative to ``output_dir``: what an
    earlier run wrote) by the staged ones; the ``last`` names (the tables) are removed first
    and moved in last, so a kill mid-way never leaves old tables beside new pictures."""
    for name in last + [n for n in owned if n not in last]:
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    staged = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    for rel in sorted(staged, key=lambda p: p.as_posix() in last):
        (output_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, output_dir / rel)
    shutil.rmtree(staging, ignore_errors=True)
