"""The ``--config`` file: the command's long options as keys, so that model
names never have to be placed on a systemd command line.

JSON, or YAML where PyYAML is installed. Keys are the long options, with
``-`` or ``_`` (``fallback-link`` and ``fallback_link`` are one key);
``models`` and ``cold`` are lists. One file serves every subcommand: a key
that a subcommand has no option for is ignored by it, a key no subcommand
knows is an error. Relative paths are taken from the file's directory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from .errors import InputProblems, InvalidOption
from .safeio import NotRegular, open_regular
from .sizes import is_decimal, parse_size

# A config is a few lines; refuse to read something that is clearly not one.
MAX_CONFIG_BYTES = 1024 * 1024

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def to_bool(value: object) -> bool:
    """A JSON/YAML boolean, or its usual spellings (older Ansible writes "True")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def to_count(value: object) -> int:
    """A whole number of at least 1 (parallel jobs)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and is_decimal(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(f"expected a whole number, got {value!r}")
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def to_number(value: object) -> float:
    """A finite, non-negative number (seconds, ratios)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"expected a finite number of at least 0, got {value!r}")
    return number


def to_size(value: object) -> int:
    """Bytes from a SIZE (see sizes.parse_size)."""
    try:
        return parse_size(value, option="value")
    except InvalidOption as error:
        raise ValueError(str(error).replace("value: ", "", 1)) from None


def to_text(value: object) -> str:
    """A non-empty string without line breaks (an owner, a path)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"{value!r} holds a line break or NUL")
    return value


def to_path(value: object) -> Path:
    return Path(to_text(value))


def to_names(value: object) -> list[str]:
    """A list of model names (validated later, all together, by the plan)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of model names, got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"expected model names as strings, got {item!r}")
    return list(value)


# Every key any subcommand reads, and how its value is checked.
KEYS: dict[str, Callable[[object], Any]] = {
    "source": to_path,
    "dest": to_path,
    "store": to_path,
    "models": to_names,
    "cold": to_names,
    "headroom": to_number,
    "reserve": to_size,
    "writeback_reserve": to_size,
    "size": to_size,
    "mem_total": to_size,
    "gpus": to_bool,
    "unit": to_text,
    "unit_memory_max": to_size,
    "unit_memory_high": to_size,
    "unit_cgroup": to_path,
    "verify": to_bool,
    "prune": to_bool,
    "dry_run": to_bool,
    "owner": to_text,
    "jobs": to_count,
    "fallback_link": to_bool,
    "lock_timeout": to_number,
    "repair": to_bool,
    "prometheus": to_path,
    "metrics_max_models": to_count,
    "verify_unit": to_text,
    "state_dir": to_path,
    "json": to_bool,
    "quiet": to_bool,
    "preload": to_names,
    "keep_alive": to_text,
    "ollama_host": to_text,
    "skip_loaded": to_bool,
    "wait": to_number,
    "retries": to_count,
    "load_timeout": to_number,
}
PATH_KEYS = frozenset(key for key, check in KEYS.items() if check is to_path)


def option_key(key: str) -> str:
    """``fallback-link`` -> ``fallback_link``: one spelling for both forms."""
    return key.replace("-", "_")


def load_config(path: Path) -> dict[str, Any]:
    """Read and check a config file: checked values by key (``_`` form).

    Every problem (unknown key, bad value) is reported together, naming the
    file and the key; a null value counts as not set.
    """
    document = _parse(path, _read(path))
    if not isinstance(document, Mapping):
        raise InvalidOption(f"config {path}: expected a mapping of option names to values")
    values: dict[str, Any] = {}
    problems: list[InvalidOption] = []
    spelled: dict[str, str] = {}
    for raw_key, raw_value in document.items():
        key = option_key(str(raw_key))
        if key not in KEYS:
            problems.append(InvalidOption(f"config {path}: unknown key {raw_key!r}"))
            continue
        if key in spelled:
            problems.append(
                InvalidOption(f"config {path}: {spelled[key]!r} and {raw_key!r} are the same key")
            )
            continue
        spelled[key] = str(raw_key)
        if raw_value is None:
            continue
        try:
            values[key] = KEYS[key](raw_value)
        except ValueError as error:
            problems.append(InvalidOption(f"config {path}: {raw_key!r}: {error}"))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputProblems(problems)
    for key in PATH_KEYS & values.keys():
        values[key] = path.parent / values[key]
    return values


def _read(path: Path) -> str:
    """The file's text, opened without blocking: a FIFO named by mistake (or by
    somebody else) would hang a blocking open, a device read for ever."""
    try:
        fd, _status = open_regular(path)
    except NotRegular as error:
        raise InvalidOption(f"config {path}: {error.strerror}") from None
    except OSError as error:
        raise InvalidOption(f"config {path}: cannot be read ({error.strerror})") from None
    try:
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise InvalidOption(f"config {path}: cannot be read ({error.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidOption(f"config {path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidOption(f"config {path}: not UTF-8 text") from None


def _parse(path: Path, text: str) -> object:
    """JSON first; YAML (a superset) when PyYAML is there and JSON fails."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidOption(f"config {path}: nested too deeply to be a config") from None
    except ValueError as json_error:
        try:
            import yaml  # noqa: PLC0415 - optional: the core is standard library only
        except ImportError:
            hint = " (YAML needs PyYAML, which is not installed)"
            if path.suffix.lower() not in (".yml", ".yaml"):
                hint = ""
            raise InvalidOption(f"config {path}: not valid JSON ({json_error}){hint}") from None
        try:
            return yaml.safe_load(text)
        except RecursionError:
            raise InvalidOption(f"config {path}: nested too deeply to be a config") from None
        except yaml.YAMLError as yaml_error:
            raise InvalidOption(f"config {path}: neither JSON nor YAML ({yaml_error})") from None
