"""A model store on disk, laid out as Ollama lays out ``OLLAMA_MODELS``.

``manifests/<host>/<namespace>/<model>/<tag>`` are JSON documents naming a
config blob and layer blobs; ``blobs/sha256-<hex>`` hold the content, named
by its sha256. Everything read from a manifest is validated before a path is
built from it: a digest is the only thing that ever names a blob file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .errors import InvalidName, InvalidOption, MalformedManifest, ModelNotFound, OperationFailed
from .names import ModelName, parse_name
from .safeio import NotRegular, kind_of, open_regular
from .sizes import MAX_SIZE, shorten

# Ollama accepts either separator and either case (manifest/paths.go).
# \Z, not $: "$" also matches before a final newline.
DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})\Z")
BLOB_NAME_RE = re.compile(r"^sha256-[0-9a-fA-F]{64}\Z")
# A manifest is a few KiB; anything huge is not one and is not read whole.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Blob:
    """One content-addressed file a manifest refers to."""

    digest: str
    size: int
    media_type: str

    @property
    def hex(self) -> str:
        return self.digest[len("sha256:") :]

    @property
    def filename(self) -> str:
        return f"sha256-{self.hex}"


@dataclass(frozen=True)
class Manifest:
    """A model's manifest: its exact bytes and the blobs they name."""

    name: ModelName
    path: Path
    raw: bytes
    blobs: tuple[Blob, ...]

    @property
    def relpath(self) -> str:
        return self.name.manifest_relpath

    @property
    def blob_bytes(self) -> int:
        return sum(blob.size for blob in self.blobs)


def _parse_blob(entry: Any, where: str, path: Path) -> Blob:
    if not isinstance(entry, dict):
        raise MalformedManifest(f"{path}: {where} is not an object")
    missing = [key for key in ("mediaType", "digest", "size") if key not in entry]
    if missing:
        raise MalformedManifest(f"{path}: {where} lacks {', '.join(missing)}")
    digest, size, media_type = entry["digest"], entry["size"], entry["mediaType"]
    if not isinstance(digest, str):
        raise MalformedManifest(f"{path}: {where} digest is not a string")
    match = DIGEST_RE.match(digest)
    if not match:
        raise MalformedManifest(f"{path}: {where} digest {digest!r} is not sha256:<64 hex digits>")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise MalformedManifest(f"{path}: {where} size {shorten(size)} is not a byte count")
    if not isinstance(media_type, str):
        raise MalformedManifest(f"{path}: {where} mediaType is not a string")
    return Blob(digest=f"sha256:{match.group(1)}", size=size, media_type=media_type)


def parse_manifest(name: ModelName, path: Path, raw: bytes) -> Manifest:
    """Validate a manifest's JSON; the blobs are config then layers, each once."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedManifest(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise MalformedManifest(f"{path}: nested too deeply to be a manifest") from None
    if not isinstance(document, dict):
        raise MalformedManifest(f"{path}: a manifest must be a JSON object")
    if "config" not in document or "layers" not in document:
        missing = [key for key in ("config", "layers") if key not in document]
        raise MalformedManifest(f"{path}: lacks {', '.join(missing)}")
    layers = document["layers"]
    if not isinstance(layers, list):
        raise MalformedManifest(f"{path}: layers is not a list")
    entries = [_parse_blob(document["config"], "config", path)]
    entries += [_parse_blob(layer, f"layers[{index}]", path) for index, layer in enumerate(layers)]
    # Keyed by the file name, as Ollama names blob files: the hex as written.
    blobs: dict[str, Blob] = {}
    for blob in entries:
        known = blobs.setdefault(blob.filename, blob)
        if known.size != blob.size:
            raise MalformedManifest(
                f"{path}: blob {blob.digest} is listed with sizes {known.size} and {blob.size}"
            )
    return Manifest(name=name, path=path, raw=raw, blobs=tuple(blobs.values()))


class Store:
    """An Ollama model store rooted at ``root`` (an OLLAMA_MODELS directory)."""

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    def manifest_path(self, name: ModelName) -> Path:
        return self.root / name.manifest_relpath

    def blob_path(self, blob: Blob) -> Path:
        return self.blobs_dir / blob.filename

    def require_directory(self, option: str) -> None:
        """Fail with the option's name when the store root is not a directory."""
        if not self.root.is_dir():
            raise InvalidOption(f"{option}: {self.root} is not a directory")

    def has_manifest(self, name: ModelName) -> bool:
        return self.manifest_path(name).is_file()

    def read_manifest(self, name: ModelName) -> Manifest:
        """Load and validate a model's manifest."""
        path = self.manifest_path(name)
        try:
            raw = _read_small_file(path)
        except FileNotFoundError:
            raise ModelNotFound(self._not_found_message(name)) from None
        except IsADirectoryError:
            raise MalformedManifest(f"{path}: is a directory, not a manifest") from None
        except NotRegular as error:
            raise MalformedManifest(f"{path}: is {error.kind}, not a manifest") from None
        except OSError as error:
            if error.errno == errno.EFBIG:
                raise MalformedManifest(f"{path}: too large to be a manifest") from None
            raise
        return parse_manifest(name, path, raw)

    def check_blobs(self, manifest: Manifest) -> None:
        """Each blob exists and has the size its manifest states (symlinks followed)."""
        # Plain strings, not Path objects: this runs for every blob of every
        # model, even when a populate has nothing to copy.
        blobs_dir = os.fspath(self.blobs_dir)
        for blob in manifest.blobs:
            path = os.path.join(blobs_dir, blob.filename)
            try:
                actual = os.stat(path).st_size
            except FileNotFoundError:
                raise MalformedManifest(
                    f"{path}: blob of {manifest.name.short} is missing from {self.root}"
                ) from None
            if actual != blob.size:
                raise MalformedManifest(
                    f"{path}: {actual} bytes, but the manifest {manifest.path} says {blob.size}"
                )

    def _not_found_message(self, name: ModelName) -> str:
        message = f"model {name.short} is not in the store {self.root} (no {name.manifest_relpath})"
        for other in self.iter_models():
            if other.folded() == name.folded():
                return f"{message}; the store has {other.short}, which differs only in case"
        return message

    def iter_models(
        self, on_skipped: Callable[[Path, str], None] | None = None
    ) -> Iterator[ModelName]:
        """Every model with a manifest file, in a stable order.

        Entries that are not valid names (leftovers, editor backups) are
        skipped: nothing here is trusted to become a path unless it parses.
        Links (to directories or manifests) and other non-regular entries are
        skipped too, and told to ``on_skipped`` with what they are.
        """
        if self.manifests_dir.is_symlink():
            raise OperationFailed(
                f"{self.manifests_dir}: is a symlink; a store's manifests are never listed"
                " through a link"
            )
        report_skipped = on_skipped or (lambda path, kind: None)
        for host_dir in _sorted_dirs(self.manifests_dir, report_skipped):
            for namespace_dir in _sorted_dirs(host_dir, report_skipped):
                for model_dir in _sorted_dirs(namespace_dir, report_skipped):
                    for tag_path in sorted(model_dir.iterdir()):
                        name = _name_from_parts(
                            host_dir.name, namespace_dir.name, model_dir.name, tag_path.name
                        )
                        if name is None:
                            continue
                        kind = _entry_kind(tag_path)
                        if kind == "regular file":
                            yield name
                        elif kind is not None:
                            report_skipped(tag_path, kind)

    def iter_blob_files(self) -> Iterator[Path]:
        """Files in blobs/ whose names are digests (links included)."""
        if not self.blobs_dir.is_dir():
            return
        for entry in sorted(os.scandir(self.blobs_dir), key=lambda item: item.name):
            if BLOB_NAME_RE.match(entry.name):
                yield Path(entry.path)


def read_limited(handle: BinaryIO, limit: int) -> bytes:
    """The rest of an open file, but at most ``limit + 1`` bytes (one more than
    allowed tells a file too large). The buffer is sized to the file, not to the
    limit: a 4 MiB buffer per manifest cost a populate with nothing to do about
    10 ms per 100 manifests."""
    wanted = min(os.fstat(handle.fileno()).st_size, limit) + 1
    data = handle.read(wanted)
    if len(data) == wanted:  # larger than the limit, or grown since the fstat
        data += handle.read(limit + 1 - wanted)
    return data


def _read_small_file(path: Path) -> bytes:
    fd, _fstat = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        raw = read_limited(handle, MAX_MANIFEST_BYTES)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise OSError(errno.EFBIG, "too large", str(path))
    return raw


def _sorted_dirs(path: Path, report_skipped: Callable[[Path, str], None]) -> list[Path]:
    try:
        entries = sorted(path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if entry.is_symlink():
            report_skipped(entry, "a symlink")
        elif entry.is_dir():
            found.append(entry)
    return found


def _entry_kind(path: Path) -> str | None:
    """What a manifest path is, in words; None when it is gone."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return "regular file"
    return "a symlink" if stat.S_ISLNK(mode) else kind_of(mode)


def _name_from_parts(host: str, namespace: str, model: str, tag: str) -> ModelName | None:
    try:
        name = parse_name(f"{host}/{namespace}/{model}:{tag}")
    except InvalidName:
        return None
    # A host like "a:b" could re-split differently; keep only exact round trips.
    if (name.host, name.namespace, name.model, name.tag) != (host, namespace, model, tag):
        return None
    return name


def blob_digest_from_filename(filename: str) -> str | None:
    """``sha256-<hex>`` -> ``sha256:<hex>``; None for anything else."""
    if BLOB_NAME_RE.match(filename):
        return "sha256:" + filename[len("sha256-") :]
    return None
