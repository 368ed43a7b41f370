"""The one seeded split of the project: films drawn by patient (docs/multimix.md, Splits by
patient).

Every split (the validation hold-out, the label budgets |D_l^c| and |D_l^s|, the TFDS
builders' validation and test cuts) goes through :func:`split_groups`: the distinct group
ids (a patient, or one film) in sorted order are permuted by ``default_rng(seed)`` and cut,
in that order, into parts of about the asked-for number of FILMS: a group joins a part when
it overshoots the part's target by no more than the part falls short
(the first group always joins), so a patient is never on both sides and
each count is reached as closely as whole patients allow. With one group per film (the
default) this is the earlier film-by-film split, draw for draw.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Iterable, Sequence

import numpy as np

from multimix_jax.errors import UserError

log = logging.getLogger("multimix_jax")


def split_groups(groups: Sequence, counts: Sequence[int], seed: int) -> list[np.ndarray]:
    """Indices of ``groups`` (one group id per film) cut into ``len(counts)`` parts of about
    ``counts[i]`` films each, whole groups only, and the rest (last); each part sorted."""
    groups = np.asarray(groups)
    ids, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    taken = np.full(len(ids), len(counts), np.int64)  # the part each group lands in
    free = list(order)
    for part, target in enumerate(counts):
        total, left = 0, []
        for g in free:
            if total < target and (total == 0 or total + sizes[g] - target <= target - total):
                taken[g], total = part, total + sizes[g]
            else:
                left.append(g)
        free = left
    where = taken[inverse.reshape(-1)]
    return [np.flatnonzero(where == part) for part in range(len(counts) + 1)]


def split_off(groups: Sequence, count: int | str, seed: int, what: str,
              *, hold_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(about ``count`` films by whole groups, the rest) of ``groups`` by :func:`split_groups`;
    'all' -> (all, all): with 'all' the unlabelled stream is the labelled set, labels
    ignored (docs/multimix.md, Training). ``what`` names the config field in messages; a
    ``hold_out`` (validation) may not take every film, it would leave training nothing
    but the validation films."""
    n = len(groups)
    if count == "all":
        if hold_out:
            raise UserError(f"{what}='all' would hold out every film: give a count below {n}")
        everything = np.arange(n)
        return everything, everything
    count = int(count)
    if count <= 0 or count > n or (hold_out and count >= n):
        raise UserError(f"{what}={count} cannot be taken from {n} films: give a count from 1 to "
                        f"{n - 1 if hold_out else n}")
    taken, rest = split_groups(groups, [count], seed)
    if hold_out and not len(rest):
        raise UserError(f"{what}={count} takes every patient of the {n} films: hold out fewer")
    if len(taken) != count:
        log.info("%s=%d drawn as %d films (whole patients)", what, count, len(taken))
    return taken, (rest if len(rest) else taken)


def keys_fingerprint(entries: Iterable[str]) -> str:
    """sha256 of the sorted, distinct entries (one line each)."""
    return hashlib.sha256("".join(f"{e}\n" for e in sorted(set(entries))).encode(
        "utf-8", "surrogateescape")).hexdigest()
