"""The workdir's own records: the config that made it (``config.json``), the comparison of a
later run's config against it, and the lock that keeps two training runs apart.

Resume, evaluate and predict compare every recorded config field except a few that do not
change what the checkpoints are (``ALLOWED``; evaluate/predict also ignore the training-only
groups in ``INFERENCE_ALLOWED``). A field the record lacks (an older workdir, a field added
since) is refused unless its default is the old behaviour (``OLD_BEHAVIOUR_DEFAULTS``).
String values that differ only by the data root (``config.data_root``) compare equal, so the
data may move; the move is written to ``config_changes.jsonl``, and ``splits.json`` (each
split's films and their content) catches data that moved in content.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import pathlib
import socket
from typing import Iterator, Sequence

from multimix_jax.errors import ConfigMismatchError, UserError, WorkdirLockedError
from multimix_jax.files import write_atomically

log = logging.getLogger("multimix_jax")

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"
LOCK_FILE = "train.lock"

SPLITS_FILE = "splits.json"

# Fields (or groups: a prefix) that may change on resume: run length, logging, test sets and
# the eval fields that leave the validation sets, the score and the threshold alone (the
# best-checkpoint ranking must compare like with like).
ALLOWED = ("train.num_steps", "train.num_epochs", "train.log_every_steps",
           "train.eval_every_steps", "train.checkpoint_every_steps", "train.keep_checkpoints",
           "train.num_image_summaries", "train.divergence_factor", "data.worker_buffer_size",
           "data.eval_batch_size", "data.eval_sets", "eval.model_name", "eval.num_example_pngs",
           "eval.table", "eval.mask_postprocess", "distributed", "data_root")
# ... and what only training reads, for evaluate/predict (the extra unlabelled pools too).
INFERENCE_ALLOWED = ALLOWED + ("train", "optim", "loss", "augment", "data.per_stream_batch",
                               "data.worker_count", "init_from", "data.cls.unlabeled_extra",
                               "data.seg.unlabeled_extra", "data.cls.unlabeled_extra_share",
                               "data.seg.unlabeled_extra_share")
# The splits only training reads: an evaluation need not name the same extra pools.
TRAINING_ONLY_SPLITS = ("cls_unlabeled_extra", "seg_unlabeled_extra")
# Fields added since older workdirs were recorded whose default is the old behaviour: their
# absence from a record means that default. Any other field missing from a record is refused.
OLD_BEHAVIOUR_DEFAULTS = {"data.cls.unlabeled_extra": "", "data.seg.unlabeled_extra": "",
                          "data.cls.unlabeled_extra_share": 0.5,
                          "data.seg.unlabeled_extra_share": 0.5, "init_from": "",
                          "eval.mask_postprocess": "none", "optim.lr_decay_steps": 0,
                          "augment.occlusion_prob": 0.0}
# Fields a resume can never change, with the reason (allowing them would fail later).
NEVER_ON_RESUME = {"data.worker_count": "Grain's iterator state of a pipeline with one number of "
                   "worker processes does not restore into one with another"}


# --------------------------------------------------------------------------- recorded config
def config_dict(config) -> dict:
    """The config as plain JSON values (tuples as lists), as recorded in config.json."""
    return json.loads(config.to_json_best_effort())


def read_recorded(workdir: str | pathlib.Path) -> dict | None:
    """The recorded config (None when there is none); a damaged record is one sentence."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot be read as the recorded config ({error}); restore it "
                        "from a copy, or move it away to go on without comparing configs") from None
    if not isinstance(recorded, dict):
        raise UserError(f"{path}: is not a recorded config (not a JSON object); restore it "
                        "from a copy, or move it away to go on without comparing configs")
    return recorded


def write_recorded(workdir: pathlib.Path, config) -> None:
    """config.json, written atomically."""
    write_atomically(workdir / CONFIG_FILE, config.to_json_best_effort(indent=2))


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; an empty dict stays a value."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(p == "all" or name == p or name.startswith(p + ".") for p in patterns)


def _rooted(value, root: str):
    """A path under the data root, written relative to it."""
    if isinstance(value, str) and root and value.startswith(root):
        return "$data_root" + value[len(root):]
    return value


_MISSING = "<not recorded>"


def config_changes(recorded: dict, current: dict, allowed: Sequence[str]) -> tuple[list, list]:
    """(refused, accepted) differences as (field, recorded, current). A field the record
    lacks is a change from ``<not recorded>`` (refused unless allowed) except where
    ``OLD_BEHAVIOUR_DEFAULTS`` gives the value it had then; a field only in the record (gone
    from the code) is warned about. ``data_root`` itself is compared as written."""
    old_root, new_root = recorded.get("data_root") or "", current.get("data_root") or ""
    old, new = flatten(recorded), flatten(current)
    refused, accepted = [], []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            log.warning("config field %s is only in the recorded config: unknown, allowed", name)
            continue
        before = old.get(name, OLD_BEHAVIOUR_DEFAULTS.get(name, _MISSING))
        if name == "data_root" and before != new[name]:
            pass  # a moved data root is recorded in config_changes.jsonl
        elif _rooted(before, old_root) == _rooted(new[name], new_root):
            continue
        (accepted if _matches(name, allowed) else refused).append((name, before, new[name]))
    return refused, accepted


def _describe(changes: list) -> str:
    return "; ".join(f"{name} {json.dumps(a)} -> {json.dumps(b)}" for name, a, b in changes)


def check_config(config, workdir: str | pathlib.Path, *, inference: bool = False,
                 allow: Sequence[str] = ()) -> list:
    """Stops with one message naming every field that differs from the workdir's recorded
    config (old -> new), unless allowed; returns the accepted changes. No record: no check."""
    recorded = read_recorded(workdir)
    if recorded is None:
        return []
    allowed = (INFERENCE_ALLOWED if inference else ALLOWED) + tuple(allow)
    refused, accepted = config_changes(recorded, config_dict(config), allowed)
    for name, old, new in refused + accepted:
        if name in NEVER_ON_RESUME and not inference:
            raise ConfigMismatchError(f"{name} cannot change on resume ({json.dumps(old)} -> "
                                      f"{json.dumps(new)}): {NEVER_ON_RESUME[name]}; resume "
                                      f"with {name}={json.dumps(old)}")
    if refused:
        fields = ",".join(name for name, _, _ in refused)
        raise ConfigMismatchError(
            f"{pathlib.Path(workdir) / CONFIG_FILE} records a different config: "
            f"{_describe(refused)}; use the config the run was made with, another --workdir, "
            f"or --allow_config_change={fields} if the change is intended")
    return accepted


def record_config(config, workdir: pathlib.Path, accepted: list, step: int) -> None:
    """Writes config.json (the config of the latest run) and appends accepted changes to
    config_changes.jsonl, so what changed on resume stays on record."""
    if accepted:
        log.warning("config changed since the recorded run: %s", _describe(accepted))
        with open(workdir / CHANGES_FILE, "a") as f:
            for name, old, new in accepted:
                f.write(json.dumps({"step": step, "field": name, "old": old, "new": new}) + "\n")
    write_recorded(workdir, config)


# --------------------------------------------------------------------------- splits
def check_splits(workdir: str | pathlib.Path, fingerprints: dict, *, compare: bool,
                 write: bool, allow: Sequence[str] = (), inference: bool = False) -> None:
    """If ``compare`` (a resume, an evaluation), compares each split's films
    (``DataSplits.fingerprints``) with those recorded in ``splits.json`` and stops naming the
    split and how many films left and joined it, unless ``allow`` names 'splits' (or 'all');
    ``inference`` (an evaluation) leaves out the splits only training reads.
    ``write`` (the chief of a training run): record them when there is no comparable record
    (a fresh run, an older workdir) or after an allowed change."""
    path = pathlib.Path(workdir) / SPLITS_FILE
    recorded = json.loads(path.read_text()) if compare and path.exists() else None
    if recorded is not None:
        moved = []
        skipped = TRAINING_ONLY_SPLITS if inference else ()
        for name in sorted((set(recorded) | set(fingerprints)) - set(skipped)):
            old = recorded.get(name, {"sha256": None, "entries": []})
            new = fingerprints.get(name, {"sha256": None, "entries": []})
            if old["sha256"] != new["sha256"]:
                before, after = set(old["entries"]), set(new["entries"])
                moved.append(f"{name} ({len(before - after)} of its {len(before)} films left it, "
                             f"{len(after - before)} joined it)")
        if moved and not _matches("splits", allow):
            raise ConfigMismatchError(
                f"{path} records other films in its splits: {'; '.join(moved)} (a file added, "
                "removed or changed, or another copy of the data); use the data the run was "
                "made with, another --workdir, or --allow_config_change=splits if intended")
        if moved:
            log.warning("splits changed since the recorded run: %s", "; ".join(moved))
        write = write and bool(moved)
    if write:
        write_atomically(path, json.dumps(fingerprints, indent=1, sort_keys=True))


def adopt_recorded_data_root(config, workdir: str | pathlib.Path) -> None:
    """An unset ``config.data_root`` ("") takes the workdir's recorded one."""
    recorded = read_recorded(workdir)
    if recorded is None or "data_root" not in config or config.data_root:
        return
    if recorded.get("data_root"):
        config.data_root = recorded["data_root"]
        log.info("data_root %s (recorded in %s)", config.data_root, workdir)


# --------------------------------------------------------------------------- lock
def _read_lock(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "another process (starting)"
    return (f"pid {holder.get('pid')} on {holder.get('host')} "
            f"(since {holder.get('started')})")


def _take(path: pathlib.Path, workdir: pathlib.Path) -> int:
    """An open descriptor of ``path`` holding its exclusive ``flock``; refused when another
    process holds it. A lock file unlinked by its releasing holder between our open and our
    flock is not the lock any more: try again on the new file."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirLockedError(
                f"{workdir} is being trained by {_holder_text(_read_lock(path))}; wait for it, "
                "or use another --workdir") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def training_lock(workdir: pathlib.Path) -> Iterator[None]:
    """Holds an exclusive ``fcntl.flock`` on ``WORKDIR/train.lock`` while training: of runs
    that start together exactly one wins, and a second run is refused naming the holder
    (pid, host, start time are written into the file). The kernel releases the lock when its
    process dies (also on kill -9), so a lock left by a killed run is simply taken."""
    path = workdir / LOCK_FILE
    fd = _take(path, workdir)
    try:
        previous = _read_lock(path)
        if previous:
            log.info("%s: taking over the lock of a finished or killed run %s", workdir,
                     _holder_text(previous))
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
        os.fsync(fd)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it: nobody else owns this file
        os.close(fd)
