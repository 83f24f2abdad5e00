"""Make a destination store (the RAM disk) hold a model set from a source store.

Hot models end up as real files, byte-identical to the source's; cold models
get their manifest and symlinks to the source's blobs. The run is a survey of
the destination (stat and small manifest reads only, under the lock), then a
decision (does it fit; with ``fallback_link``, what to link instead), then
the changes, in the order that keeps every installed manifest whole:

1. stale temporary files of an interrupted run are removed;
2. with ``prune``, manifests leaving the set, then blobs nothing uses any more;
3. hot blobs are copied (temporary file, then rename), cold ones linked;
4. a manifest is installed once every blob it names is in place;
5. with ``prune``, blobs only the replaced manifests used.

Decisions recorded here, beyond the contract:

- DEST itself is created when missing (0755, owner applied), its parent
  never: a missing parent usually means the RAM disk is not mounted.
- A dry run creates nothing, not even the lock file: it takes a shared lock
  only when the lock file already exists, so it waits for a running populate.
- With ``verify`` a blob that fails its hash is not installed; models whose
  blobs all verified are still installed, the others are not, and the run
  fails naming the blob and its models.
- Temporary files are fsync'ed before the rename: free on tmpfs, and on a
  disk destination it keeps a crash from leaving an empty file under a final
  name.
- The file work runs as the user who controls DEST (identity.py), never as
  root on a tree another user controls; ``owner`` is given only to what the
  run creates, and an entry already there keeps its owner.
- ``ram_only`` is reported on every run, pruning or not.
- Models write-back recorded in the source (record.py) are kept as cold
  unless listed, and reported as ``written_back``.
- A blob an earlier fallback already linked is listed under ``fallback``
  again but not rewritten: only a link written makes the run ``changed``, so
  that a RAM disk too small for its set is still idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .defaults import LOCK_TIMEOUT
from .desttree import DestTree, check_disjoint
from .errors import (
    InvalidInput,
    InvalidOption,
)
from .identity import acting_as, run_identity
from .names import ModelName, parse_names
from .owners import Owner, parse_owner
from .plan import resolve_model_set
from .populate_apply import PopulateRun
from .populate_survey import DestSurvey
from .progress import Reporter
from .record import read_record
from .safeio import check_jobs, default_jobs
from .store import Store
from .storelock import StoreLock, check_lock_timeout


@dataclass
class PopulateOptions:
    """What to put where; mirrors the ``populate`` command line."""

    source: Path
    dest: Path
    models: Sequence[str]
    cold: Sequence[str] = ()
    verify: bool = False
    prune: bool = False
    dry_run: bool = False
    owner: str | None = None
    jobs: int | None = None  # None: safeio.default_jobs()
    fallback_link: bool = False
    lock_timeout: float = LOCK_TIMEOUT


@dataclass
class PopulateResult:
    """What a run did (or, dry, would do); ``to_dict`` is the CLI contract."""

    dry_run: bool
    copied: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    ram_only: list[str] = field(default_factory=list)
    written_back: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    models_added: list[str] = field(default_factory=list)
    models_removed: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    # Changes no list shows: directories created, fallback links written.
    other_changes: bool = False

    @property
    def changed(self) -> bool:
        return bool(
            self.copied or self.linked or self.pruned or self.manifests or self.other_changes
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "copied": sorted(self.copied),
            "linked": sorted(self.linked),
            "fallback": sorted(self.fallback),
            "pruned": list(self.pruned),
            "ram_only": list(self.ram_only),
            "written_back": list(self.written_back),
            "skipped": self.skipped,
            "bytes_copied": self.bytes_copied,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "manifests": list(self.manifests),
            "models_added": list(self.models_added),
            "models_removed": list(self.models_removed),
        }


def populate(options: PopulateOptions, reporter: Reporter | None = None) -> PopulateResult:
    """Apply the model set to ``options.dest``; see the module docstring for the rules.

    Raises InvalidInput subclasses (exit 2) before anything changes, and
    OutOfSpace, VerificationFailed, LockTimeout or OperationFailed (exit 1).
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    owner = parse_owner(options.owner)
    jobs = default_jobs() if options.jobs is None else check_jobs(options.jobs)
    timeout = check_lock_timeout(options.lock_timeout)
    source = Store(Path(options.source))
    dest = Path(options.dest)
    identity = run_identity(
        [dest],
        [source.root],
        owner_uid=owner.uid if owner else -1,
        owner_gid=owner.gid if owner else -1,
    )
    with acting_as(identity):
        result = _populate(
            options,
            source=source,
            dest=dest,
            owner=owner,
            jobs=jobs,
            timeout=timeout,
            reporter=reporter,
        )
    result.seconds = time.monotonic() - started
    return result


def _populate(
    options: PopulateOptions,
    *,
    source: Store,
    dest: Path,
    owner: Owner | None,
    jobs: int,
    timeout: float,
    reporter: Reporter,
) -> PopulateResult:
    source.require_directory("source")
    check_disjoint(source.root, dest)
    written_back = _written_back(source, options, reporter)
    model_set = resolve_model_set(
        source, list(options.models), [*options.cold, *(name.qualified for name in written_back)]
    )
    tree = DestTree(dest, owner)
    look = DestSurvey(
        model_set,
        source=source,
        tree=tree,
        prune=options.prune,
        fallback_link=options.fallback_link,
        reporter=reporter,
    )
    run = PopulateRun(
        options, PopulateResult(dry_run=options.dry_run), tree=tree, reporter=reporter, jobs=jobs
    )
    run.result.written_back = [name.qualified for name in written_back]
    try:
        if not tree.open_root():
            _check_parent(dest)
            if not options.dry_run:
                # Nothing to lock yet: check the space before DEST is even created.
                look.decide(look.survey())
                run.result.other_changes = tree.create_root()
        with StoreLock(tree, timeout, shared_if_present=options.dry_run, on_wait=reporter.warn):
            survey = look.survey()
            fallback = look.decide(survey)
            if options.dry_run:
                run.preview(survey, fallback)
            else:
                run.apply(survey, fallback)
    finally:
        tree.close()
    return run.result


def _written_back(source: Store, options: PopulateOptions, reporter: Reporter) -> list[ModelName]:
    """Recorded models of the source outside the set, kept as cold (record.py).

    One that cannot be served (manifest gone or broken, blob missing) is left
    out with a warning: it must never keep ollama.service from starting."""
    listed = set(parse_names([*options.models, *options.cold]))
    kept = []
    gone = []  # a record may name thousands (record.py bounds it): one line for them all
    for name in read_record(source.root, reporter.warn):
        if name in listed:
            continue
        if not source.has_manifest(name):
            gone.append(name.short)
            continue
        try:
            source.check_blobs(source.read_manifest(name))
        except InvalidInput as error:
            reporter.warn(f"written-back model {name.short} not kept: {error}")
            continue
        kept.append(name)
    if gone:
        reporter.warn(
            f"{len(gone)} written-back model(s) no longer in {source.root}, not kept:"
            f" {', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''}"
        )
    return kept


def _check_parent(dest: Path) -> None:
    parent = dest.absolute().parent
    if not parent.is_dir():
        raise InvalidOption(
            f"dest: neither {dest} nor its parent {parent} exists (is the RAM disk mounted?)"
        )
