"""Load models into a running Ollama through its API, so the first request pays no load.

Ollama has no preload at start of its own. A request with only ``model`` and
``keep_alive`` loads a model and keeps it for that long (``-1``: until it is
evicted). This waits for the API to answer (bounded), then loads each model
in turn with bounded retries, and reports every model by name: loaded, with
the time it took, or not, with Ollama's own error. It never retries forever.
With ``skip_loaded`` a model Ollama has loaded already (``/api/ps``) is left
alone, so that a second run changes nothing; ``dry_run`` only says what
would be loaded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from .defaults import PRELOAD_LOAD_TIMEOUT, PRELOAD_RETRIES, PRELOAD_WAIT
from .errors import InvalidOption, OperationFailed
from .names import ModelName, parse_names
from .ollama_api import api_base, call_json, running_models
from .printable import write_line
from .sizes import is_decimal, shorten

# Each look at /api/version while waiting for the server to come up.
VERSION_SECONDS = 5.0

__all__ = ["PreloadResult", "api_base", "loaded_models", "preload", "wait_for_api"]


@dataclass
class PreloadResult:
    loaded: list[str] = field(default_factory=list)
    already_loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.loaded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "loaded": list(self.loaded),
            "already_loaded": list(self.already_loaded),
            "failed": dict(self.failed),
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


# Go's time.ParseDuration, which Ollama reads keep_alive strings with.
_GO_DURATION = re.compile(
    r"[+-]?(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)\Z", re.ASCII
)
# Seconds as a JSON number: Ollama holds a duration in int64 nanoseconds.
MAX_KEEP_ALIVE_SECONDS = 2**63 // 10**9


def _keep_alive(value: object) -> int | str:
    """A JSON number is seconds, a string a Go duration (Ollama's own reading)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidOption(f"keep_alive: {shorten(value)} is not a duration")
    text = value.strip() if isinstance(value, str) else None
    digits = text[1:] if text and text[0] in "+-" else text
    if digits and digits.isascii() and digits.isdigit():
        if not is_decimal(digits):  # int() refuses 4300 digits; none is a duration
            raise InvalidOption(f"keep_alive: {shorten(text)} seconds is beyond any duration")
        value = int(text)
    if isinstance(value, int):
        if abs(value) > MAX_KEEP_ALIVE_SECONDS:
            raise InvalidOption(f"keep_alive: {shorten(value)} seconds is beyond any duration")
        return value
    if not text:
        raise InvalidOption("keep_alive: empty")
    if not _GO_DURATION.match(text):
        raise InvalidOption(
            f"keep_alive: {shorten(text)} is neither seconds nor a Go duration (5m, 1h30m, -1)"
        )
    return text


def loaded_models(base: str) -> set[ModelName]:
    """What Ollama has loaded now, by qualified name (``/api/ps``)."""
    return {model.name for model in running_models(base)}


def wait_for_api(base: str, wait: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Until ``/api/version`` answers, at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        try:
            call_json(base, "/api/version", seconds=min(VERSION_SECONDS, max(left, 0.1)))
            return
        except OperationFailed as error:
            if time.monotonic() >= deadline:
                raise OperationFailed(
                    f"Ollama did not answer on {base} within {wait:g} s ({error});"
                    " nothing was preloaded"
                ) from None
        sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))


def preload(
    models: Sequence[str],
    *,
    host: str | None = None,
    keep_alive: object = "-1",
    wait: float = PRELOAD_WAIT,
    retries: int = PRELOAD_RETRIES,
    load_timeout: float = PRELOAD_LOAD_TIMEOUT,
    skip_loaded: bool = False,
    dry_run: bool = False,
    log: Callable[[str], None] = write_line,
    sleep: Callable[[float], None] = time.sleep,
) -> PreloadResult:
    """Load each model with ``keep_alive``; the result names each one."""
    started = time.monotonic()
    names = parse_names(list(models))
    if not names:
        raise InvalidOption("no models to preload")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise InvalidOption(f"retries: expected a whole number of at least 1, got {retries!r}")
    keep = _keep_alive(keep_alive)
    base = api_base(host)
    wait_for_api(base, wait, sleep)
    result = PreloadResult(dry_run=dry_run)
    already = loaded_models(base) if skip_loaded or dry_run else set()
    for name in names:
        model = name.short
        if name in already:
            result.already_loaded.append(model)
            continue
        if dry_run:
            result.loaded.append(model)
            log(f"would preload {model} (keep_alive {keep})")
            continue
        for attempt in range(1, retries + 1):
            began = time.monotonic()
            try:
                call_json(base, "/api/generate", load_timeout, {"model": model, "keep_alive": keep})
            except OperationFailed as error:
                reason = str(error)
                if attempt < retries and "not found" not in reason:
                    sleep(2.0**attempt)
                    continue
                result.failed[model] = reason
                log(f"could not preload {model} after {attempt} attempt(s): {reason}")
                break
            result.loaded.append(model)
            log(f"preloaded {model} in {time.monotonic() - began:.1f} s (keep_alive {keep})")
            break
    result.seconds = time.monotonic() - started
    return result
