"""File work on a store runs with the rights of the store's owner, never root's.

The stores belong to the ``ollama`` user, and any client of Ollama's API can
make the server write into the RAM disk. A root process that walks such a
tree trusts whatever that user planted: a store root swapped for a link to
/etc, a blob linked to a root-only file. So when the command runs as root on
a tree another user controls, it takes that user's uid, gid and groups for
the file work (the effective ids: root's are restored afterwards, for the
few steps that need root, such as writing a metrics file into a root-owned
directory). Then the kernel, not this code, refuses every escape: the run
can read and write exactly what the owner could.

Who controls a path: the owner of the deepest existing directory on it (the
path as given and the path resolved) that root does not own. When root owns
every component, nobody else can change the tree and the run stays root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidOption

ROOT_UID = 0


@dataclass(frozen=True)
class Identity:
    """A user the run acts as: effective uid and gid and supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str


def identity_of(uid: int, gid: int | None = None) -> Identity:
    """The user ``uid`` with its primary group (or ``gid``) and its groups."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        primary = gid if gid is not None and gid >= 0 else uid
        return Identity(uid=uid, gid=primary, groups=(primary,), name=str(uid))
    primary = gid if gid is not None and gid >= 0 else entry.pw_gid
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, primary))))
    return Identity(uid=uid, gid=primary, groups=groups, name=entry.pw_name)


def _owners_along(path: Path) -> list[tuple[Path, os.stat_result]]:
    """lstat of every existing component of ``path`` from the root down."""
    found: list[tuple[Path, os.stat_result]] = []
    absolute = Path(os.path.abspath(path))
    for component in [*reversed(absolute.parents), absolute]:
        try:
            found.append((component, os.lstat(component)))
        except OSError:
            break
    return found


def controller(path: Path) -> tuple[Path, os.stat_result] | None:
    """The deepest existing component of ``path`` that root does not own: its
    owner can replace what lies below it. Links on the way count (their owner
    chose where they lead), and so do the components of the resolved path."""
    candidates = _owners_along(path)
    if os.path.realpath(path) != os.path.abspath(path):
        candidates += _owners_along(Path(os.path.realpath(path)))
    foreign = [(where, status) for where, status in candidates if status.st_uid != ROOT_UID]
    if not foreign:
        return None
    # The deepest one: the store's own owner rather than a home directory above it.
    return max(foreign, key=lambda item: len(item[0].parts))


def run_identity(
    written: Sequence[Path],
    read: Sequence[Path] = (),
    owner_uid: int = -1,
    owner_gid: int = -1,
    option: str = "owner",
) -> Identity | None:
    """Whom the file work runs as; None to stay as we are.

    Only a root run changes identity. The trees written to decide first (the
    run must be able to create files there), then the trees only read. An
    explicit owner (``--owner``) must be that user: a run as ``ollama`` cannot
    give files to anybody else, and a root run must not do so on a tree
    ``ollama`` controls. On trees root controls entirely, the owner named is
    the identity (so that what is created is the owner's from the start).
    """
    if os.geteuid() != ROOT_UID:
        return None
    for path in [*written, *read]:
        found = controller(path)
        if found is None:
            continue
        where, status = found
        if owner_uid not in (-1, status.st_uid):
            raise InvalidOption(
                f"{option}: files cannot be given to uid {owner_uid}: {where} belongs to"
                f" {identity_of(status.st_uid).name}, who controls the store, and the"
                " command works on it with that user's rights"
            )
        gid = owner_gid if owner_gid >= 0 else status.st_gid
        chosen = identity_of(status.st_uid, gid)
        if owner_gid >= 0 and owner_gid not in chosen.groups:
            raise InvalidOption(
                f"{option}: {chosen.name} is not a member of group {owner_gid}, so files"
                " of the store cannot be given to it"
            )
        return chosen
    if owner_uid not in (-1, ROOT_UID):
        return identity_of(owner_uid, owner_gid if owner_gid >= 0 else None)
    return None


# Identity changes are process-wide: one change at a time, and the one in force.
_lock = threading.RLock()
_acting: list[Identity] = []


@contextlib.contextmanager
def acting_as(identity: Identity | None) -> Iterator[None]:
    """Take ``identity``'s effective ids for the block, then root's back.

    A no-op unless the process is root now (so nested uses are free). The
    saved set-user-ID stays 0, which also keeps the unprivileged user from
    tracing or signalling the process meanwhile.
    """
    if identity is None or os.geteuid() != ROOT_UID:
        yield
        return
    _preload()
    with _lock:
        saved_groups = os.getgroups()
        saved_gid = os.getegid()
        _become(identity)
        _acting.append(identity)
    try:
        yield
    finally:
        with _lock:
            _acting.pop()
            os.seteuid(ROOT_UID)
            os.setegid(saved_gid)
            os.setgroups(saved_groups)


def _preload() -> None:
    """Load what the file work imports lazily while root can still read it: the
    interpreter's library may lie where the owner cannot read (a virtual
    environment in root's home)."""
    import hashlib  # noqa: F401, PLC0415


def _become(identity: Identity) -> None:
    os.setgroups(list(identity.groups))
    os.setegid(identity.gid)
    os.seteuid(identity.uid)


def make_owned_directory(path: Path, mode: int = 0o755) -> bool:
    """Create ``path`` as root and give it to the identity in force; False when
    the run does not act for another user or root does not control the parent
    (then nothing is done and the caller's PermissionError stands)."""
    with _lock:
        if not _acting or controller(Path(os.path.abspath(path)).parent) is not None:
            return False
        identity = _acting[-1]
        os.seteuid(ROOT_UID)
        try:
            os.mkdir(path, mode)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchown(fd, identity.uid, identity.gid)
            finally:
                os.close(fd)
        finally:
            _become(identity)
    return True
