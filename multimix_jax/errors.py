"""Every exception the package raises on purpose. A ``UserError``'s message is one sentence
that names the flag, field or file at fault and says what would work; ``main`` prints it as
``error: ...`` without a traceback."""

from __future__ import annotations

import os
from pathlib import Path


class UserError(ValueError):
    """Bad input from the user: the message is one sentence that says what would work."""


class ConfigMismatchError(UserError):
    """A resume, evaluate or predict with a config the workdir was not made with."""


class WorkdirLockedError(UserError):
    """Another run is training this workdir."""


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """No (such) checkpoint in the workdir."""


class DamagedCheckpointError(UserError):
    """A checkpoint whose files cannot be read back as they were written."""

    def __init__(self, step: int, problem: str, advice: str = ""):
        self.step, self.problem = step, problem
        super().__init__(f"checkpoint {step} is damaged ({problem}){advice}")


class DataError(UserError):
    """A problem with the user's data; the message starts with the file at fault."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = Path(path)
        super().__init__(f"{path}: {problem}")


class NonFiniteLossError(FloatingPointError):
    """Training met a non-finite loss or parameters."""


class DivergenceError(FloatingPointError):
    """Training's loss rose far above its lowest (train.divergence_factor)."""
