"""The RAM disk's tmpfs options, by one rule: the fstab line and the first
mount, the remount that grows a mounted RAM disk or changes its options in
place (keeping every file), and what only the next mount can change.

tmpfs leaves options at their defaults out of the mount table: mode 1777,
uid and gid 0, huge never, mpol default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

THP_SHMEM = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
MODE = "0755"
# What the RAM disk never needs: set-uid files, devices, programs.
_LOCKED_DOWN = ("nosuid", "nodev", "noexec")


def huge_setting(setting: str, shmem_enabled: str) -> str:
    """The ``huge=`` value for a setting: ``auto`` is ``within_size`` where the
    kernel's tmpfs has transparent huge pages (its sysfs file exists and is not
    ``[deny]``, which turns them off for every tmpfs), else none (empty)."""
    if setting != "auto":
        return setting
    return "within_size" if shmem_enabled.strip() and "[deny]" not in shmem_enabled else ""


def local_huge_setting(setting: str = "auto") -> str:
    """huge_setting for this machine's kernel."""
    try:
        shmem_enabled = THP_SHMEM.read_text()
    except OSError:
        shmem_enabled = ""
    return huge_setting(setting, shmem_enabled)


@dataclass(frozen=True)
class Wanted:
    """The RAM disk the role wants: the plan's size, the owner, the page and
    NUMA policies, and whether it stays out of swap."""

    size: str
    size_bytes: int
    uid: int
    gid: int
    huge: str = ""
    mpol: str = ""
    noswap: bool = False

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Wanted:
        return cls(
            size=str(values["size"]),
            size_bytes=int(values["size_bytes"]),
            uid=int(values["uid"]),
            gid=int(values["gid"]),
            huge=str(values.get("huge") or ""),
            mpol=str(values.get("mpol") or ""),
            noswap=_flag(values.get("noswap", False)),
        )


def _flag(value: object) -> bool:
    """A boolean as Ansible may pass one through a template: a bool or its text."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def fstab_options(wanted: Wanted) -> list[str]:
    """The options of the fstab line, and of the first mount."""
    options = [f"size={wanted.size}", f"mode={MODE}", f"uid={wanted.uid}", f"gid={wanted.gid}"]
    options += _LOCKED_DOWN
    options += [f"huge={wanted.huge}"] if wanted.huge else []
    options += [f"mpol={wanted.mpol}"] if wanted.mpol else []
    options += ["noswap"] if wanted.noswap else []
    return options


def _parse(options: str) -> dict[str, str]:
    """Mount-table options as name -> value ("" for a flag such as noswap)."""
    return dict(option.partition("=")[::2] for option in options.split(",") if option)


@dataclass(frozen=True)
class MountChange:
    """What a mounted RAM disk needs: to grow, a remount for its options, and
    the options that wait for the next mount."""

    grow: bool
    options_differ: bool
    remount_options: list[str]
    pending: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "grow": self.grow,
            "options_differ": self.options_differ,
            "remount": self.grow or self.options_differ,
            "remount_options": self.remount_options,
            "pending": self.pending,
        }


def mount_change(wanted: Wanted, live_options: str, live_size: int) -> MountChange:
    """Compare a mounted RAM disk (its mount-table options and size) with the
    wanted one. A remount never shrinks it (tmpfs would refuse below its use)
    and cannot change noswap; a mpol left to the default stays until the next
    mount too."""
    live = _parse(live_options)
    live_mpol = live.get("mpol", "default")
    # Without a node list the kernel shows the nodes it chose (interleave -> interleave:0-1).
    shown_mpol = live_mpol if ":" in wanted.mpol else live_mpol.split(":")[0]
    mpol_set = wanted.mpol not in ("", "default")
    differ = (
        live.get("mode", "1777") != MODE.lstrip("0")
        or live.get("uid", "0") != str(wanted.uid)
        or live.get("gid", "0") != str(wanted.gid)
        or live.get("huge", "never") != (wanted.huge or "never")
        or (mpol_set and wanted.mpol != shown_mpol)
    )
    remount = ["remount", f"size={max(live_size, wanted.size_bytes)}", f"mode={MODE}",
               f"uid={wanted.uid}", f"gid={wanted.gid}"]  # fmt: skip
    if wanted.huge or "huge" in live:
        remount.append(f"huge={wanted.huge or 'never'}")
    if mpol_set:
        remount.append(f"mpol={wanted.mpol}")
    pending = []
    if wanted.noswap != ("noswap" in live):
        pending.append(f"noswap {'on' if wanted.noswap else 'off'}")
    if not mpol_set and live_mpol != "default":
        pending.append(f"mpol default (now {live_mpol})")
    return MountChange(
        grow=live_size < wanted.size_bytes,
        options_differ=differ,
        remount_options=remount,
        pending=pending,
    )
