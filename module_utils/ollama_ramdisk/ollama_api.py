"""Ollama's HTTP API, read by the preload and by the metrics: the address,
requests bounded in total time and bytes, and what ``/api/ps`` says is loaded.

Any client of the API can make a model (and so a name) appear: every field of
an answer is checked before it is used, and an answer is read only up to a
bound.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .bounded_http import TransportError, request
from .defaults import OLLAMA_HOST
from .errors import InvalidOption, OperationFailed, RamdiskError
from .names import ModelName, parse_name
from .sizes import shorten

# /api/ps lists a few models; a megabyte is far more than any real answer.
MAX_ANSWER_BYTES = 1024 * 1024


def api_base(host: str | None) -> str:
    """``OLLAMA_HOST`` as Ollama reads it -> the URL to reach it on this host."""
    text = (host or OLLAMA_HOST).strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port or 11434
    except ValueError:
        raise InvalidOption(f"host: {host!r} is not a host[:port]") from None
    if parts.scheme not in ("http", "https") or (parts.hostname is None and parts.netloc):
        raise InvalidOption(f"host: {host!r} is not an http(s) address")
    name = parts.hostname or ""
    # A server listening on every address answers on the loopback one.
    if name in ("", "0.0.0.0", "::"):  # noqa: S104 - a listen address read, not bound
        name = "127.0.0.1"
    if ":" in name:
        name = f"[{name}]"
    return f"{parts.scheme}://{name}:{port}"


def call_json(
    base: str,
    path: str,
    seconds: float,
    body: dict[str, Any] | None = None,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> dict[str, Any]:
    """GET ``path`` (POST ``body`` when given) and its answer, a JSON object.

    The whole request, however slowly the server drips it, ends within
    ``seconds``, and no more than ``max_bytes`` are read: whatever listens on
    Ollama's port while Ollama is stopped may be any local user's server.
    OperationFailed, naming the URL, for every way it can go wrong; for an
    HTTP error, with Ollama's own ``error`` field when it sent one.
    """
    url = base + path
    try:
        answer = request(
            url,
            method="GET" if body is None else "POST",
            body=None if body is None else json.dumps(body).encode(),
            headers={} if body is None else {"Content-Type": "application/json"},
            seconds=seconds,
            max_bytes=max_bytes,
            follow_redirects=False,
        )
    except TransportError as error:
        raise OperationFailed(str(error)) from None
    document = _json_object(answer.body)
    if answer.status != 200:
        said = document.get("error") if isinstance(document, dict) else None
        reason = said if isinstance(said, str) and said else f"HTTP {answer.status}"
        raise OperationFailed(f"{url}: {shorten(reason, 500)}")
    if not isinstance(document, dict):
        raise OperationFailed(f"{url}: {document}")
    return document


def _json_object(raw: bytes) -> dict[str, Any] | str:
    """The answer as a JSON object, or the reason it is not one."""
    try:
        document = json.loads(raw or b"{}")
    except RecursionError:
        return "an answer nested too deeply to be Ollama's"
    except ValueError:
        return "an answer that is not JSON"
    return document if isinstance(document, dict) else "an answer that is not a JSON object"


@dataclass(frozen=True)
class RunningModel:
    """One entry of ``/api/ps``: a model Ollama holds in memory now."""

    name: ModelName
    size_bytes: int
    vram_bytes: int
    # Seconds since the epoch; None when Ollama gave no usable time.
    expires_at: float | None


def running_models(base: str, timeout: float = 10.0) -> list[RunningModel]:
    """What Ollama has loaded now; entries it cannot have written are left out."""
    listing = call_json(base, "/api/ps", timeout).get("models") or []
    if not isinstance(listing, list):
        raise OperationFailed(f"{base}/api/ps: 'models' is not a list")
    running: list[RunningModel] = []
    for entry in listing:
        if not isinstance(entry, dict):
            continue
        try:
            name = parse_name(entry.get("name") or entry.get("model"))
        except (TypeError, RamdiskError):
            continue  # a name this version cannot parse
        running.append(
            RunningModel(
                name=name,
                size_bytes=_byte_count(entry.get("size")),
                vram_bytes=_byte_count(entry.get("size_vram")),
                expires_at=parse_go_time(entry.get("expires_at")),
            )
        )
    return running


def _byte_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return 0
    return value


# Go's RFC 3339 with nanoseconds: 2319-03-13T15:00:58.202140475Z, or an offset.
_GO_TIME = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z", re.ASCII
)


def parse_go_time(value: object) -> float | None:
    """Seconds since the epoch of a Go time as JSON writes it; None if it is not one
    (Python 3.9's fromisoformat reads neither nanoseconds nor ``Z``)."""
    match = _GO_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).timestamp() + float(f"0.{fraction or 0}")
