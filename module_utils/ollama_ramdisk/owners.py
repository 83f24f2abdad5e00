"""Who owns what a run creates: ``USER[:GROUP]`` parsed before anything is
changed, and mode and owner given to each new file or directory."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from .errors import InvalidOption
from .sizes import is_decimal, shorten

DIR_MODE = 0o755
FILE_MODE = 0o644


@dataclass(frozen=True)
class Owner:
    """Numeric owner for created files; -1 leaves that id unchanged (as chown)."""

    uid: int
    gid: int

    def differs(self, status: os.stat_result) -> bool:
        return (self.uid not in (-1, status.st_uid)) or (self.gid not in (-1, status.st_gid))


def parse_owner(text: str | None) -> Owner | None:
    """``user[:group]``, names or numeric ids; without a group, the user's own.

    Unknown names are InvalidOption, raised before anything is changed.
    """
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        raise InvalidOption(f"owner: expected USER[:GROUP], got {text!r}")
    user, _sep, group = text.strip().partition(":")
    uid, primary_gid = _lookup_user(user, text) if user else (-1, -1)
    gid = _lookup_group(group, text) if group else primary_gid
    return Owner(uid=uid, gid=gid)


# Ids are 32 bits; (uid_t)-1 means "unchanged" to chown.
MAX_ID = 2**32 - 2


def _numeric_id(text: str, what: str, whole: str) -> int | None:
    """A numeric id, None for a name; InvalidOption for a number no id can be."""
    if not (text.isascii() and text.isdigit()):
        return None
    if not is_decimal(text, 10) or int(text) > MAX_ID:
        raise InvalidOption(
            f"owner: {what} id {shorten(text)} is out of range (in {shorten(whole)})"
        )
    return int(text)


def _lookup_user(user: str, text: str) -> tuple[int, int]:
    uid = _numeric_id(user, "user", text)
    try:
        entry = pwd.getpwuid(uid) if uid is not None else pwd.getpwnam(user)
    except KeyError:
        if uid is not None:
            return uid, -1
        raise InvalidOption(f"owner: no such user {user!r} (in {text!r})") from None
    except ValueError:  # a name holding NUL
        raise InvalidOption(f"owner: no such user {user!r} (in {text!r})") from None
    return entry.pw_uid, entry.pw_gid


def _lookup_group(group: str, text: str) -> int:
    gid = _numeric_id(group, "group", text)
    if gid is not None:
        return gid
    try:
        return grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise InvalidOption(f"owner: no such group {group!r} (in {text!r})") from None


def apply_owner(fd: int, owner: Owner | None, mode: int) -> None:
    """Mode and owner of a file or directory we just created (umask ignored)."""
    os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)
