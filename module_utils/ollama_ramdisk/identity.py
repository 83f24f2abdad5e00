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

Who controls a path: whoever may change the deepest existing component on
it (the path as given and the path resolved) that anybody but root may
change: its owner when root does not own it, else the members of a group
that may write it, else every user (a directory anybody may write). A
sticky directory above the deepest component (``/tmp``) lets others add
entries but not replace root's, so its write bits do not count there. When
only root can change every component, the run stays root; a tree every user
may change is refused, and so is one a group controls unless the member to
act as is known (``--owner``, or the group's only member).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
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


def group_members(gid: int) -> tuple[str, ...]:
    """Users other than root in group ``gid``: named in it, or with it as primary."""
    try:
        named = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        named = set()
    named |= {entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == gid}
    return tuple(sorted(name for name in named if _uid_of(name) != ROOT_UID))


def _uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


@dataclass(frozen=True)
class Control:
    """Who besides root may change ``where``: its owner (``by`` "owner"), the
    members of its group ("group") or every user ("others")."""

    where: Path
    status: os.stat_result
    by: str
    # For "group": its members other than root, as _control_of found them.
    members: tuple[str, ...] = ()

    @property
    def mode_text(self) -> str:
        return f"{stat.S_IMODE(self.status.st_mode):04o}"

    @property
    def group_name(self) -> str:
        try:
            return grp.getgrgid(self.status.st_gid).gr_name
        except KeyError:
            return str(self.status.st_gid)


def _control_of(where: Path, status: os.stat_result, deepest: bool) -> Control | None:
    if status.st_uid != ROOT_UID:
        return Control(where, status, "owner")
    if stat.S_ISLNK(status.st_mode):
        return None  # a link's mode means nothing; root chose where it leads
    # Below a sticky directory only an entry's owner may rename or remove it.
    if status.st_mode & stat.S_ISVTX and not deepest:
        return None
    if status.st_mode & stat.S_IWOTH:
        return Control(where, status, "others")
    members = group_members(status.st_gid) if status.st_mode & stat.S_IWGRP else ()
    if members:
        return Control(where, status, "group", members)
    return None


def _controls_along(path: Path) -> list[Control]:
    found = _owners_along(path)
    return [
        control
        for index, (where, status) in enumerate(found)
        if (control := _control_of(where, status, index == len(found) - 1)) is not None
    ]


def controller(path: Path) -> Control | None:
    """Who may change what lies below ``path`` besides root: the deepest
    component anybody else may change. Links on the way count (their owner
    chose where they lead), and so do the components of the resolved path."""
    candidates = _controls_along(path)
    if os.path.realpath(path) != os.path.abspath(path):
        candidates += _controls_along(Path(os.path.realpath(path)))
    if not candidates:
        return None
    # The deepest one: the store's own owner rather than a home directory above it.
    return max(candidates, key=lambda control: len(control.where.parts))


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
        if found is not None:
            return _identity_for(found, owner_uid, owner_gid, option)
    if owner_uid not in (-1, ROOT_UID):
        return identity_of(owner_uid, owner_gid if owner_gid >= 0 else None)
    return None


def directory_identity(where: Path, status: os.stat_result) -> Identity | None:
    """Whom to write into an open directory as (its fstat): whoever besides
    root may change it; None (root) when nobody else may. What lies above no
    longer matters once the directory itself is held by a descriptor."""
    if os.geteuid() != ROOT_UID:
        return None
    found = _control_of(where, status, deepest=True)
    return None if found is None else _identity_for(found, -1, -1, "owner")


def _identity_for(found: Control, owner_uid: int, owner_gid: int, option: str) -> Identity:
    if found.by == "others":
        raise InvalidOption(
            f"{found.where} (mode {found.mode_text}) may be changed by every user, so"
            " nothing below it can be trusted: a root run refuses to work there; take"
            f" the write right away from others (chmod o-w {found.where})"
        )
    if found.by == "group":
        return _group_member(found, owner_uid, owner_gid, option)
    uid = found.status.st_uid
    if owner_uid not in (-1, uid):
        raise InvalidOption(
            f"{option}: files cannot be given to uid {owner_uid}: {found.where} belongs to"
            f" {identity_of(uid).name}, who controls the store, and the"
            " command works on it with that user's rights"
        )
    gid = owner_gid if owner_gid >= 0 else found.status.st_gid
    chosen = identity_of(uid, gid)
    _check_member(chosen, owner_gid, option)
    return chosen


def _group_member(found: Control, owner_uid: int, owner_gid: int, option: str) -> Identity:
    """A root-owned directory a group may write: the work runs as a member of
    that group, the owner named or the group's only member."""
    gid = found.status.st_gid
    members = found.members
    where = (
        f"{found.where} (mode {found.mode_text}, group {found.group_name}) may be changed"
        f" by the group's members ({', '.join(members)})"
    )
    if owner_uid in (-1, ROOT_UID):
        if owner_uid == -1 and len(members) == 1:
            chosen = identity_of(pwd.getpwnam(members[0]).pw_uid, gid)
            _check_member(chosen, owner_gid, option)
            return chosen
        raise InvalidOption(
            f"{where}, so a root run does not work there with root's rights: name the"
            " member to act as (--owner USER of populate, writeback and pull), or make"
            f" the directory writable by its owner only (chmod g-w {found.where})"
        )
    chosen = identity_of(owner_uid, owner_gid if owner_gid >= 0 else gid)
    if gid not in chosen.groups:
        raise InvalidOption(
            f"{option}: {chosen.name} is not a member of group {found.group_name}: {where},"
            " and the command works on it with a member's rights"
        )
    _check_member(chosen, owner_gid, option)
    return chosen


def _check_member(chosen: Identity, owner_gid: int, option: str) -> None:
    if owner_gid >= 0 and owner_gid not in chosen.groups:
        raise InvalidOption(
            f"{option}: {chosen.name} is not a member of group {owner_gid}, so files"
            " of the store cannot be given to it"
        )


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
