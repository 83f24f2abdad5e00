"""Exceptions of the core, each carrying the model, file or option at fault.

Exit codes live on the classes so that the CLI and the Ansible modules map
errors the same way: 2 for invalid input, 1 for an operation that failed.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


class RamdiskError(Exception):
    """Base class: an operation of the toolkit failed."""

    exit_code = EXIT_FAILED


class InvalidInput(RamdiskError):
    """The caller asked for something that cannot be valid (exit 2)."""

    exit_code = EXIT_INVALID


class InvalidName(InvalidInput):
    """A model reference that Ollama itself would reject."""


class InvalidOption(InvalidInput):
    """A bad option value: a size, a headroom, a path, a config file."""


class ModelNotFound(InvalidInput):
    """The model has no manifest in the store it was looked up in."""


class MalformedManifest(InvalidInput):
    """A manifest that cannot be trusted to describe its blobs."""


class InputProblems(InvalidInput):
    """Several invalid inputs found together, so the operator fixes them at once."""

    def __init__(self, problems: Sequence[InvalidInput]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class OperationFailed(RamdiskError):
    """The input was valid but the work could not be done (exit 1)."""


class DoesNotFit(OperationFailed):
    """The model set needs more memory than the host can give."""


class OutOfSpace(OperationFailed):
    """The destination has too little free space for what must be written."""


class VerificationFailed(OperationFailed):
    """A blob's content does not hash to its name."""


class LockTimeout(OperationFailed):
    """Another run holds the destination's lock for too long."""


def os_error_text(error: OSError, where: object = None) -> str:
    """An OSError in words: its paths (else ``where``) and the reason, never "None"."""
    paths = [str(path) for path in (error.filename, error.filename2) if path is not None]
    if not paths and where is not None:
        paths = [str(where)]
    reason = error.strerror or str(error) or type(error).__name__
    return f"{' -> '.join(paths)}: {reason}" if paths else reason
