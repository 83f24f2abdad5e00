"""Make every named model present in the disk store: pull what it lacks.

First a survey that changes nothing: which models the store lacks (no
manifest, or a blob missing or of the wrong size), what the registry's
manifest of each says (so that a model that cannot be pulled fails before
anything is fetched), how many bytes must cross the network (blobs the store
has, or that an earlier model of the set brings, are not fetched), and
whether the disk store holds them above its reserve.

Then the pull, model by model, by the host's own Ollama (ollama_helper.py)
straight into the disk store: Ollama checks each blob's sha256 as it lands,
and this module hashes the model's blobs once more before it counts the
model as present. Through a fleet mirror the model is pulled under the
mirror's name, copied to the name the inventory gives (manifests only: blobs
are content-addressed) and the mirror's name removed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bounded_http import TransportError, open_stream, request
from .defaults import WRITEBACK_RESERVE
from .errors import ModelNotFound, OutOfSpace
from .identity import Identity, acting_as, identity_of, run_identity
from .names import ModelName, parse_names
from .ollama_helper import find_ollama, helper_server
from .owners import parse_owner
from .progress import Reporter, rate_text, summary_line
from .registry import Mirror, Origin, fetch_manifest, origin_of, pull_failed
from .sizes import human, parse_size
from .stopping import check_stop
from .store import Blob, Store
from .verify import verify_store

# A pull streams progress several times a second; a long silence is a hang.
# (Ollama is silent while it hashes a large blob: minutes for tens of GB.)
IDLE_SECONDS = 900.0
API_SECONDS = 120.0


@dataclass
class PullOptions:
    source: Path
    models: Sequence[object]
    mirror: Mirror | None = None
    reserve: int | str = WRITEBACK_RESERVE
    dry_run: bool = False
    owner: str | None = None
    ollama: str | None = None


@dataclass(frozen=True)
class Wanted:
    """A model the store lacks, with what its registry says of it."""

    origin: Origin
    blobs: tuple[Blob, ...]
    # Blobs neither the store nor an earlier model of this pull brings.
    fetch: tuple[Blob, ...]

    @property
    def bytes(self) -> int:
        return sum(blob.size for blob in self.blobs)

    @property
    def fetch_bytes(self) -> int:
        return sum(blob.size for blob in self.fetch)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.origin.wanted.qualified,
            "registry": self.origin.registry,
            "bytes": self.bytes,
            "fetch_bytes": self.fetch_bytes,
        }


@dataclass
class Survey:
    present: list[ModelName] = field(default_factory=list)
    wanted: list[Wanted] = field(default_factory=list)
    free_bytes: int = 0

    @property
    def fetch_bytes(self) -> int:
        return sum(model.fetch_bytes for model in self.wanted)


@dataclass
class PullResult:
    """What a pull did; ``to_dict`` is the CLI's JSON."""

    present: list[str] = field(default_factory=list)
    pulled: list[dict[str, Any]] = field(default_factory=list)
    bytes_fetched: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            # As Ansible reports check mode: what a real run would change.
            "changed": bool(self.pulled),
            "pulled": self.pulled,
            "present": self.present,
            "bytes_fetched": self.bytes_fetched,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


def _identity(options: PullOptions) -> Identity | None:
    owner = parse_owner(options.owner)
    if owner is None:
        return run_identity([options.source])
    found = run_identity([options.source], owner_uid=owner.uid, owner_gid=owner.gid)
    return found if found is not None or os.geteuid() != 0 else identity_of(owner.uid, owner.gid)


def survey(options: PullOptions, identity: Identity | None = None) -> Survey:
    """What the store lacks and what fetching it takes; PullFailed or
    OutOfSpace before anything changes when it cannot be done."""
    store = Store(options.source)
    store.require_directory("source")
    names = list(dict.fromkeys(parse_names(list(options.models))))
    reserve = parse_size(options.reserve)
    found = Survey()
    with acting_as(identity):
        lacking = [name for name in names if not _present(store, name, found)]
        # Read only when something must be fetched: a run at rest stats nothing more.
        have = _blob_sizes(store) if lacking else {}
        for name in lacking:
            check_stop(name.short)
            origin = origin_of(name, options.mirror)
            manifest = fetch_manifest(origin)
            fetch = tuple(blob for blob in manifest.blobs if have.get(blob.filename) != blob.size)
            have.update((blob.filename, blob.size) for blob in fetch)
            found.wanted.append(Wanted(origin, manifest.blobs, fetch))
        info = os.statvfs(store.root)
    found.free_bytes = info.f_bavail * info.f_frsize
    if found.wanted and found.free_bytes - found.fetch_bytes < reserve:
        listed = ", ".join(
            f"{model.origin.wanted.short} ({human(model.fetch_bytes)} from {model.origin.registry})"
            for model in found.wanted
        )
        raise OutOfSpace(
            f"source: pulling {listed} into {store.root} needs {human(found.fetch_bytes)}, and"
            f" {human(found.free_bytes)} is free; {human(reserve)} must stay free (the"
            " write-back reserve)"
        )
    return found


def _present(store: Store, name: ModelName, found: Survey) -> bool:
    """Whole in the store: its manifest (one that cannot be read is the
    operator's to look at, and raised) and every blob at its size. A model
    with a blob missing is pulled again: Ollama fetches only what lacks."""
    try:
        manifest = store.read_manifest(name)
    except ModelNotFound:
        return False
    for blob in manifest.blobs:
        try:
            if os.stat(store.blob_path(blob)).st_size != blob.size:
                return False
        except FileNotFoundError:
            return False
    found.present.append(name)
    return True


def _blob_sizes(store: Store) -> dict[str, int]:
    """Size of every file in the store's blobs/ (links followed, as Ollama's
    pull looks: a blob it finds is not fetched again)."""
    sizes: dict[str, int] = {}
    try:
        entries = list(os.scandir(store.blobs_dir))
    except FileNotFoundError:
        return sizes
    for entry in entries:
        try:
            sizes[entry.name] = entry.stat().st_size
        except OSError:
            continue
    return sizes


def pull(options: PullOptions, reporter: Reporter | None = None) -> PullResult:
    """Survey, then pull every model the store lacks (nothing in a dry run)."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    identity = _identity(options)
    found = survey(options, identity)
    result = PullResult(present=[name.qualified for name in found.present], dry_run=options.dry_run)
    if options.dry_run or not found.wanted:
        result.pulled = [model.describe() for model in found.wanted]
        result.bytes_fetched = 0
        result.seconds = time.monotonic() - started
        return result
    binary = find_ollama(options.ollama)
    reporter.start(found.fetch_bytes, sum(len(model.fetch) for model in found.wanted))
    with helper_server(binary, options.source.resolve(), identity) as base:
        for model in found.wanted:
            check_stop(model.origin.wanted.short)
            done = _pull_one(base, model, options.mirror, reporter)
            _check_pulled(base, options.source, model)
            result.pulled.append(done)
            result.bytes_fetched += done["fetched_bytes"]
    result.seconds = time.monotonic() - started
    reporter.finish(
        summary_line(
            "pulled", sum(len(m.fetch) for m in found.wanted), result.bytes_fetched, result.seconds
        )
        + f" for {len(result.pulled)} model(s)"
    )
    return result


def _pull_one(
    base: str, model: Wanted, mirror: Mirror | None, reporter: Reporter
) -> dict[str, Any]:
    origin = model.origin
    started = time.monotonic()
    body = json.dumps(
        {
            "model": origin.pull_name.qualified,
            "insecure": bool(mirror and mirror.insecure and origin.via_mirror),
            "stream": True,
        }
    ).encode()
    progress: dict[str, int] = {}
    stream_transfer(base, "/api/pull", body, origin, progress=progress, reporter=reporter)
    if origin.via_mirror:
        _rename(base, origin)
    seconds = time.monotonic() - started
    # What the store lacked and now has: Ollama's progress events are sampled
    # (a small blob can land between two), so they feed the live line only.
    fetched = model.fetch_bytes
    reporter.advance(fetched - sum(progress.values()))
    reporter.file_done(origin.wanted.short, fetched, "pulled")
    return {
        **model.describe(),
        "fetched_bytes": fetched,
        "seconds": round(seconds, 3),
        "rate": rate_text(fetched, seconds),
    }


def stream_transfer(
    base: str,
    path: str,
    body: bytes,
    origin: Origin,
    *,
    action: str = "pulled from",
    progress: dict[str, int] | None = None,
    reporter: Reporter | None = None,
) -> None:
    """POST a pull or push to the host's Ollama and follow its stream of events
    to the end; PullFailed naming the model and the registry unless it ends in
    success."""
    verb = action.split(maxsplit=1)[0].replace("pulled", "pull").replace("pushed", "push")
    try:
        stream = open_stream(f"{base}{path}", body, idle_seconds=IDLE_SECONDS)
    except TransportError as error:
        raise pull_failed(
            origin, f"the host's Ollama did not take the {verb}: {error}", action
        ) from None
    status = ""
    try:
        if stream.status != 200:
            text = b"".join(stream.lines()).decode("utf-8", "replace")
            raise pull_failed(origin, f"HTTP {stream.status}: {_said(text)}", action)
        for line in stream.lines():
            check_stop(origin.wanted.short)
            status = (
                check_event(
                    origin, line, progress if progress is not None else {}, reporter, action
                )
                or status
            )
    except TransportError as error:
        raise pull_failed(origin, str(error), action) from None
    finally:
        stream.close()
    if status != "success":
        said = f"the {verb} ended without success (last status: {status or 'none'})"
        raise pull_failed(origin, said, action)


def check_event(
    origin: Origin,
    line: bytes,
    progress: dict[str, int],
    reporter: Reporter | None,
    action: str = "pulled from",
) -> str:
    """One line of Ollama's pull or push stream: an error fails the transfer,
    progress is counted; returns the status it gives."""
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        raise pull_failed(origin, f"the host's Ollama sent {line[:120]!r}", action) from None
    if not isinstance(event, dict):
        return ""
    if event.get("error"):
        raise pull_failed(origin, str(event["error"])[:2000], action)
    digest, completed = event.get("digest"), event.get("completed")
    if isinstance(digest, str) and isinstance(completed, int) and not isinstance(completed, bool):
        step = completed - progress.get(digest, 0)
        if step > 0:
            progress[digest] = completed
            if reporter is not None:
                reporter.advance(step)
    status = event.get("status")
    return status if isinstance(status, str) else ""


def _rename(base: str, origin: Origin) -> None:
    """Give the mirror's copy the inventory's name, then drop the mirror's
    name (its blobs stay: the copy's manifest names the same ones)."""
    mirrored, wanted = origin.pull_name.qualified, origin.wanted.qualified
    call_api(base, "/api/copy", "POST", {"source": mirrored, "destination": wanted}, origin)
    call_api(base, "/api/delete", "DELETE", {"model": mirrored}, origin)


def call_api(
    base: str,
    path: str,
    method: str,
    body: dict[str, Any],
    origin: Origin,
    *,
    action: str = "pulled from",
) -> None:
    try:
        answer = request(
            base + path, method=method, body=json.dumps(body).encode(), seconds=API_SECONDS,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
    except TransportError as error:
        raise pull_failed(origin, f"{path}: {error}", action) from None
    if answer.status != 200:
        said = _said(answer.body.decode("utf-8", "replace"))
        raise pull_failed(origin, f"{path}: HTTP {answer.status}: {said}", action)


def _said(text: str) -> str:
    try:
        return str(json.loads(text).get("error") or text)[:2000]
    except (ValueError, RecursionError, AttributeError):
        return text.strip()[:2000] or "no reason given"


def _check_pulled(base: str, source: Path, model: Wanted) -> None:
    """Hash the pulled model's blobs: a model counts as present only whole,
    else its manifest goes again (through Ollama, which keeps shared blobs)."""
    name = model.origin.wanted
    checked = verify_store(Store(source), [name.qualified])
    if checked.ok:
        return
    call_api(base, "/api/delete", "DELETE", {"model": name.qualified}, model.origin)
    bad = ", ".join(checked.corrupt + checked.missing)
    raise pull_failed(model.origin, f"after the pull its blobs do not hash to their names: {bad}")
