"""The record of models written back from the RAM disk, kept in the disk store.

A model made in the RAM disk (``ollama pull``, ``create``, ``cp``) and written
back is in no inventory: without a record, the next boot would leave it out
of the RAM disk and out of ``ollama list``. ``writeback`` adds every model it
writes to this file at the disk store's root; ``populate`` keeps each recorded
model as cold (manifest in RAM, blobs linked to disk) unless it is hot.

The file is the owner's and read as hostile: a regular file, no link
followed, bounded in size; a name that does not parse is ignored with a
warning, and so is a file that does not parse, since a bad record must never
keep ollama.service from starting. Removing a name from the record never
removes the model from the disk store.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Callable

from .desttree import DestTree
from .errors import InvalidName
from .names import ModelName, parse_name
from .safeio import NotRegular, open_regular
from .store import read_limited

RECORD_NAME = "ollama-ramdisk-written-back.json"
MAX_RECORD_BYTES = 1024 * 1024

_COMMENT = (
    "Models ollama-ramdisk wrote back from the RAM disk to this store; "
    "populate keeps them visible (as cold models). Removing a line forgets one, "
    "it does not delete it."
)


def read_record(store_root: Path, warn: Callable[[str], None]) -> list[ModelName]:
    """The recorded names, in order; empty when there is no (usable) record."""
    path = Path(store_root) / RECORD_NAME
    try:
        fd, _fstat = open_regular(path, follow=False)
    except FileNotFoundError:
        return []
    except (NotRegular, IsADirectoryError):
        warn(f"{path} is not a regular file: ignored")
        return []
    except OSError as error:
        reason = "a symlink, never followed" if error.errno == errno.ELOOP else error.strerror
        warn(f"{path}: {reason}: ignored")
        return []
    with os.fdopen(fd, "rb") as handle:
        raw = read_limited(handle, MAX_RECORD_BYTES)
    return parse_record(raw, path, warn)


def parse_record(raw: bytes, path: Path, warn: Callable[[str], None]) -> list[ModelName]:
    if len(raw) > MAX_RECORD_BYTES:
        warn(f"{path} is larger than {MAX_RECORD_BYTES} bytes: ignored")
        return []
    try:
        entries = json.loads(raw.decode("utf-8"))["models"]
        if not isinstance(entries, list):
            raise TypeError
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        warn(f'{path} is not a record of models ({{"models": [...]}}): ignored')
        return []
    names: dict[ModelName, None] = {}  # in order, each once, without a list scan
    for entry in entries:
        try:
            name = parse_name(entry)
        except InvalidName as error:
            warn(f"{path}: {error}: ignored")
            continue
        names.setdefault(name)
    return list(names)


def load_record(tree: DestTree, warn: Callable[[str], None]) -> list[ModelName]:
    """The record of an opened store (the disk store while write-back holds its lock)."""
    raw = tree.read_regular(RECORD_NAME, MAX_RECORD_BYTES)
    if raw is None:
        if tree.lstat(RECORD_NAME) is not None:
            warn(f"{tree.root / RECORD_NAME} is not a regular file: ignored")
        return []
    return parse_record(raw, tree.root / RECORD_NAME, warn)


def write_record(
    tree: DestTree, kept: Iterable[ModelName], added: Iterable[ModelName]
) -> list[ModelName]:
    """Replace the record atomically (temporary file, rename) with ``kept`` and
    as many of ``added`` as fit within MAX_RECORD_BYTES, the size read_record
    reads: what this writes is always read back, and a record flooded with
    names refuses the newest, never drops an older one. The refused, in order."""
    models = {name.qualified for name in kept}
    size = len(_encode(sorted(models)))
    refused = []
    for name in added:
        if name.qualified in models:
            continue
        # A name costs its JSON string, a comma, a newline and the indent.
        cost = len(json.dumps(name.qualified)) + 6
        if size + cost > MAX_RECORD_BYTES:
            refused.append(name)
            continue
        models.add(name.qualified)
        size += cost
    tree.install_bytes(RECORD_NAME, _encode(sorted(models)))
    return refused


def _encode(models: list[str]) -> bytes:
    return (json.dumps({"comment": _COMMENT, "models": models}, indent=2) + "\n").encode("utf-8")


def remove_record(tree: DestTree) -> None:
    tree.unlink(RECORD_NAME)
