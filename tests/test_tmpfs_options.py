"""The RAM disk's tmpfs options by one rule: fstab, remount, what waits."""

from __future__ import annotations

import pytest
from ollama_ramdisk.tmpfs_options import Wanted, fstab_options, huge_setting, mount_change

GIB = 1024**3
WANTED = Wanted(size="12g", size_bytes=12 * GIB, uid=999, gid=998, huge="within_size")
# As the mount table shows the RAM disk a run of the role mounted with WANTED.
LIVE = "rw,nosuid,nodev,noexec,relatime,size=12582912k,mode=755,uid=999,gid=998,huge=within_size"


@pytest.mark.parametrize(
    ("setting", "sysfs", "expected"),
    [
        ("auto", "always within_size advise [never] deny force", "within_size"),
        ("auto", "always within_size advise never [deny] force", ""),
        ("auto", "", ""),
        ("never", "always [within_size] advise never deny force", "never"),
        ("", "always within_size advise [never] deny force", ""),
    ],
)
def test_auto_means_within_size_where_the_kernel_has_huge_pages(
    setting: str, sysfs: str, expected: str
) -> None:
    assert huge_setting(setting, sysfs) == expected


def test_the_fstab_line_locks_the_ram_disk_down() -> None:
    wanted = Wanted(size="12g", size_bytes=12 * GIB, uid=999, gid=998, huge="within_size",
                    mpol="interleave", noswap=True)  # fmt: skip

    assert fstab_options(wanted) == [
        "size=12g", "mode=0755", "uid=999", "gid=998", "nosuid", "nodev", "noexec",
        "huge=within_size", "mpol=interleave", "noswap",
    ]  # fmt: skip


def test_a_ram_disk_as_wanted_needs_nothing() -> None:
    change = mount_change(WANTED, LIVE, 12 * GIB)

    assert change.to_dict() == {
        "grow": False, "options_differ": False, "remount": False,
        "remount_options": ["remount", f"size={12 * GIB}", "mode=0755", "uid=999", "gid=998",
                            "huge=within_size"],
        "pending": [],
    }  # fmt: skip


def test_a_larger_set_grows_it_and_a_smaller_one_never_shrinks_it() -> None:
    grown = mount_change(WANTED, LIVE.replace("12582912k", "8388608k"), 8 * GIB)
    smaller = Wanted(size="4g", size_bytes=4 * GIB, uid=999, gid=998, huge="within_size")
    kept = mount_change(smaller, LIVE, 12 * GIB)

    assert grown.grow
    assert f"size={12 * GIB}" in grown.remount_options
    assert not kept.grow
    assert not kept.options_differ
    assert f"size={12 * GIB}" in kept.remount_options


@pytest.mark.parametrize(
    ("live", "why"),
    [
        (LIVE.replace(",mode=755", ""), "mode at its default 1777"),
        (LIVE.replace("uid=999", "uid=0"), "another owner"),
        (LIVE.replace(",gid=998", ""), "group at its default 0"),
        (LIVE.replace(",huge=within_size", ""), "no huge pages yet"),
    ],
)
def test_options_a_remount_can_change_are_remounted(live: str, why: str) -> None:
    change = mount_change(WANTED, live, 12 * GIB)

    assert change.options_differ, why
    assert change.to_dict()["remount"]


def test_turning_huge_pages_off_remounts_with_never() -> None:
    off = Wanted(size="12g", size_bytes=12 * GIB, uid=999, gid=998, huge="")

    change = mount_change(off, LIVE, 12 * GIB)

    assert change.options_differ
    assert "huge=never" in change.remount_options


def test_a_mpol_without_nodes_matches_the_nodes_the_kernel_chose() -> None:
    interleave = Wanted(size="12g", size_bytes=12 * GIB, uid=999, gid=998,
                        huge="within_size", mpol="interleave")  # fmt: skip

    same = mount_change(interleave, LIVE + ",mpol=interleave:0-1", 12 * GIB)
    other = mount_change(interleave, LIVE + ",mpol=bind:0", 12 * GIB)

    assert not same.options_differ
    assert other.options_differ
    assert "mpol=interleave" in other.remount_options


def test_noswap_and_a_mpol_back_to_default_wait_for_the_next_mount() -> None:
    noswap = Wanted(size="12g", size_bytes=12 * GIB, uid=999, gid=998, huge="within_size",
                    noswap=True)  # fmt: skip

    turned_on = mount_change(noswap, LIVE, 12 * GIB)
    mpol_left = mount_change(WANTED, LIVE + ",mpol=bind:0,noswap", 12 * GIB)

    assert turned_on.pending == ["noswap on"]
    assert not turned_on.options_differ
    assert mpol_left.pending == ["noswap off", "mpol default (now bind:0)"]
    assert not any(option.startswith(("mpol", "noswap")) for option in mpol_left.remount_options)


@pytest.mark.parametrize(
    ("given", "noswap"), [(True, True), ("True", True), ("False", False), (False, False)]
)
def test_noswap_read_from_a_template_is_a_real_boolean(given: object, noswap: bool) -> None:
    wanted = Wanted.from_mapping({"size": "1g", "size_bytes": GIB, "uid": "0", "gid": 0,
                                  "noswap": given})  # fmt: skip

    assert wanted.noswap is noswap
