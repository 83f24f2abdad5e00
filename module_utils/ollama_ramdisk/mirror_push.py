"""Seed a fleet mirror: push models of a disk store to an OCI registry.

The host's own Ollama pushes (ollama_helper.py, on the disk store): each model
is named ``MIRROR/namespace/model:tag`` for the push (a manifest copy; blobs
are shared) and that name is removed afterwards, so the store ends as it was.
The mirror keeps blobs it already has: a second push sends only manifests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .identity import acting_as, run_identity
from .names import DEFAULT_HOST, parse_names
from .ollama_helper import find_ollama, helper_server
from .pull import call_api, stream_transfer
from .registry import (
    ManifestUnknown,
    Mirror,
    Origin,
    fetch_manifest,
    origin_of,
)
from .stopping import check_stop
from .store import Manifest, Store

PUSHED = "pushed to"


@dataclass
class PushOptions:
    source: Path
    models: Sequence[object]
    mirror: Mirror
    ollama: str | None = None


def push(options: PushOptions, dry_run: bool = False) -> dict[str, Any]:
    """Push every model (each must be whole in the store) the mirror lacks;
    JSON: changed, pushed, present (on the mirror already), skipped (not of
    the default registry), mirror, seconds.
    A dry run checks and asks the mirror, and pushes nothing."""
    started = time.monotonic()
    store = Store(options.source)
    store.require_directory("source")
    names = list(dict.fromkeys(parse_names(list(options.models))))
    # The mirror stands in for the default registry only (registry.py).
    skipped = [name.qualified for name in names if name.host != DEFAULT_HOST]
    names = [name for name in names if name.host == DEFAULT_HOST]
    identity = run_identity([options.source])
    with acting_as(identity):
        local = {name: store.read_manifest(name) for name in names}
        for manifest in local.values():
            store.check_blobs(manifest)
    # A model the mirror has with the same blobs is not pushed again.
    wanted = [name for name in names if not _mirrored(local[name], options.mirror)]
    result = {
        "changed": bool(wanted),
        "pushed": [name.qualified for name in wanted],
        "present": [name.qualified for name in names if name not in wanted],
        "skipped": skipped,
        "mirror": options.mirror.address,
        "seconds": 0.0,
    }
    if dry_run or not wanted:
        return result
    binary = find_ollama(options.ollama)
    with helper_server(binary, options.source.resolve(), identity) as base:
        for name in wanted:
            check_stop(name.short)
            origin = origin_of(name, options.mirror)
            mirrored = origin.pull_name.qualified
            call_api(
                base,
                "/api/copy",
                "POST",
                {"source": name.qualified, "destination": mirrored},
                origin,
                action=PUSHED,
            )
            try:
                _push_one(base, origin, options.mirror)
            finally:
                call_api(base, "/api/delete", "DELETE", {"model": mirrored}, origin, action=PUSHED)
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _mirrored(manifest: Manifest, mirror: Mirror) -> bool:
    try:
        there = fetch_manifest(origin_of(manifest.name, mirror), PUSHED)
    except ManifestUnknown:
        return False
    return set(there.blobs) == set(manifest.blobs)


def _push_one(base: str, origin: Origin, mirror: Mirror) -> None:
    body = json.dumps(
        {"model": origin.pull_name.qualified, "insecure": mirror.insecure, "stream": True}
    ).encode()
    stream_transfer(base, "/api/push", body, origin, action=PUSHED)
