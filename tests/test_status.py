"""status: residency of each model on a real tmpfs, and node_exporter metrics."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from exposition import parse_exposition, series
from ollama_ramdisk.errors import InvalidOption
from ollama_ramdisk.metrics import prometheus_text, write_prometheus
from ollama_ramdisk.mounts import find_mount, gets_huge_pages
from ollama_ramdisk.names import parse_name
from ollama_ramdisk.sizes import MIB, round_up
from ollama_ramdisk.status import StoreStatus, store_status
from ollama_ramdisk.store import Store
from storegen import MountTmpfs, SyntheticStore, make_store, weights

HOT = "llama3.2:1b"
COLD = "qwen2.5-coder:7b"
PARTIAL = "acme/embedder:v1"
DANGLING = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
SHRUNK = "llama3.2:3b"
PULLED = "pulled:1"


def _copy_model(source: SyntheticStore, dest: Path, name: str, link: bool = False) -> None:
    """What populate leaves: the manifest, then each blob copied (hot) or linked (cold)."""
    spec = source.models[name]
    (dest / "blobs").mkdir(parents=True, exist_ok=True)
    for layer in spec.blobs:
        target = dest / layer.relpath
        if target.exists() or target.is_symlink():
            continue
        if link:
            target.symlink_to(source.blob_path(layer))
        else:
            shutil.copyfile(source.blob_path(layer), target)
    manifest = dest / spec.manifest_relpath
    manifest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.manifest_path(name), manifest)


@pytest.fixture
def ramdisk(tmpfs: MountTmpfs, fleet: SyntheticStore) -> Path:
    """A 16 MiB tmpfs whose store holds a hot, a cold, a partial, a dangling, a
    shrunk and a RAM-only model."""
    mount = tmpfs("16m", name="ramdisk")
    dest = mount / "models"
    _copy_model(fleet, dest, HOT)
    _copy_model(fleet, dest, COLD, link=True)
    _copy_model(fleet, dest, PARTIAL)
    (dest / fleet.models[PARTIAL].layers[0].relpath).unlink()
    _copy_model(fleet, dest, DANGLING, link=True)
    dangling = dest / fleet.models[DANGLING].layers[0].relpath
    dangling.unlink()
    dangling.symlink_to(fleet.root / "blobs" / "gone")
    _copy_model(fleet, dest, SHRUNK)
    os.truncate(dest / fleet.models[SHRUNK].layers[0].relpath, 10)
    make_store(dest).add(PULLED, [weights(5000, "pulled")])
    return dest


def _by_name(status: StoreStatus) -> dict[str, dict[str, object]]:
    return {model["name"]: model for model in status.to_dict()["models"]}


def test_residency_of_hot_cold_and_partial_models(ramdisk: Path, fleet: SyntheticStore) -> None:
    models = _by_name(store_status(Store(ramdisk)))

    residency = {name: model["residency"] for name, model in models.items()}
    assert residency == {
        parse_name(HOT).qualified: "ram",
        parse_name(COLD).qualified: "linked",
        parse_name(PARTIAL).qualified: "partial",
        parse_name(DANGLING).qualified: "partial",
        parse_name(SHRUNK).qualified: "partial",
        parse_name(PULLED).qualified: "ram",
    }
    cold = fleet.models[COLD]
    # The template it shares with the hot model is a regular file: still "linked".
    shared = set(fleet.distinct_blobs(HOT))
    assert models[cold.qualified]["linked"] == [
        layer.relpath for layer in cold.blobs if layer.hex not in shared
    ]
    assert 0 < len(models[cold.qualified]["linked"]) < len(cold.blobs)
    assert models[cold.qualified]["missing"] == []
    assert models[parse_name(PARTIAL).qualified]["missing"] == [
        fleet.models[PARTIAL].layers[0].relpath
    ]
    assert models[parse_name(DANGLING).qualified]["missing"] == [
        fleet.models[DANGLING].layers[0].relpath
    ]
    assert models[parse_name(SHRUNK).qualified]["missing"] == [
        fleet.models[SHRUNK].layers[0].relpath
    ]


def test_model_bytes_and_blob_counts_match_the_manifest(
    ramdisk: Path, fleet: SyntheticStore
) -> None:
    models = _by_name(store_status(Store(ramdisk)))

    for name in (HOT, COLD, PARTIAL):
        spec = fleet.models[name]
        entry = models[spec.qualified]
        assert entry["bytes"] == sum(layer.size for layer in spec.blobs) + len(
            spec.manifest_bytes()
        )
        assert entry["blobs"] == len(spec.blobs)


def test_mount_is_the_tmpfs_holding_the_store_with_its_use(ramdisk: Path) -> None:
    status = store_status(Store(ramdisk))

    mount = status.to_dict()["mount"]
    assert mount["path"] == str(ramdisk.parent)
    assert mount["fstype"] == "tmpfs"
    assert mount["size_bytes"] == 16 * MIB
    regular = [
        path.stat().st_size
        for path in ramdisk.rglob("*")
        if path.is_file() and not path.is_symlink()
    ]
    assert mount["used_bytes"] >= sum(round_up(size, 4096) for size in regular)
    assert mount["used_bytes"] + mount["available_bytes"] == mount["size_bytes"]


def test_ram_only_models_are_known_only_given_the_source(
    ramdisk: Path, fleet: SyntheticStore
) -> None:
    without = store_status(Store(ramdisk)).to_dict()
    with_source = store_status(Store(ramdisk), source=fleet.store).to_dict()

    assert "ram_only" not in without
    assert with_source["ram_only"] == [parse_name(PULLED).qualified]


def test_an_unreadable_manifest_makes_its_model_partial_with_the_reason(
    ramdisk: Path,
) -> None:
    broken = ramdisk / "manifests/registry.ollama.ai/library/broken/1"
    broken.parent.mkdir(parents=True)
    broken.write_text("{oops")

    entry = _by_name(store_status(Store(ramdisk)))["registry.ollama.ai/library/broken:1"]

    assert entry["residency"] == "partial"
    assert entry["bytes"] == 5
    assert entry["problem"].startswith(f"{broken}: not valid JSON")


def test_an_empty_store_has_no_models(tmp_path: Path) -> None:
    status = store_status(Store(tmp_path))

    assert status.to_dict()["models"] == []
    assert status.mount is not None


def test_a_store_that_is_not_a_directory_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidOption, match="is not a directory"):
        store_status(Store(tmp_path / "absent"))


# ---------------------------------------------------------------- find_mount


def test_the_longest_topmost_mount_point_containing_the_path_wins(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    for directory in ("a/models", "a b/models", "abc"):
        (root / directory).mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"30 22 0:40 / {root}/a rw,nosuid - tmpfs first rw,size=1024k\n"
        f"31 30 0:41 / {root}/a rw,nosuid shared:7 master:2 - tmpfs second rw,size=2048k\n"
        f"32 22 0:42 / {root}/a\\040b rw - tmpfs spaced rw\n"
        f"33 22 0:43 / {root}/ab rw - xfs /dev/sdb1 rw\n"
        "garbage line without separator\n"
    )

    stacked = find_mount(root / "a" / "models", mountinfo)
    spaced = find_mount(root / "a b" / "models", mountinfo)
    sibling = find_mount(root / "abc", mountinfo)

    assert stacked is not None
    assert (stacked.path, stacked.fstype, stacked.source) == (f"{root}/a", "tmpfs", "second")
    assert spaced is not None
    assert (spaced.path, spaced.source) == (f"{root}/a b", "spaced")
    assert sibling is not None
    assert (sibling.path, sibling.fstype) == ("/", "ext4")


@pytest.mark.parametrize(
    ("fstype", "options", "huge"),
    [
        ("tmpfs", "rw,size=1024k,huge=within_size", True),
        ("tmpfs", "rw,huge=always,inode64", True),
        ("tmpfs", "rw,size=1024k,huge=advise", False),
        ("tmpfs", "rw,size=1024k", False),
        ("ext4", "rw,huge=always", False),
    ],
)
def test_huge_pages_are_read_from_the_mount_options(
    tmp_path: Path, fstype: str, options: str, huge: bool
) -> None:
    root = Path(os.path.realpath(tmp_path))
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"30 22 0:40 / {root} rw,nosuid - {fstype} ramdisk {options}\n"
    )

    mount = find_mount(root, mountinfo)

    assert mount is not None
    assert mount.huge_pages is huge
    assert gets_huge_pages(root, mountinfo) is huge
    assert gets_huge_pages(root, tmp_path / "no-mountinfo") is False


def test_no_mount_table_means_no_mount(tmp_path: Path) -> None:
    assert find_mount(tmp_path, tmp_path / "no-mountinfo") is None


# ---------------------------------------------------------------- Prometheus


def test_metrics_describe_mount_models_and_residency(ramdisk: Path, fleet: SyntheticStore) -> None:
    status = store_status(Store(ramdisk), source=fleet.store)

    samples = parse_exposition(prometheus_text(status))

    store = str(ramdisk)
    assert series(samples, "ollama_ramdisk_size_bytes", store=store, fstype="tmpfs") == 16 * MIB
    assert series(samples, "ollama_ramdisk_used_bytes", store=store) == status.mount.used_bytes
    assert series(samples, "ollama_ramdisk_models", store=store) == 6
    assert series(samples, "ollama_ramdisk_ram_only_models", store=store) == 1
    for model in status.models:
        name = model.name.qualified
        assert series(samples, "ollama_ramdisk_model_bytes", model=name) == model.bytes
        states = {
            residency: series(
                samples, "ollama_ramdisk_model_resident", model=name, residency=residency
            )
            for residency in ("ram", "linked", "partial")
        }
        assert states == {residency: float(residency == model.residency) for residency in states}


def test_label_values_are_escaped(tmpfs: MountTmpfs, fleet: SyntheticStore) -> None:
    odd = tmpfs("4m") / 'we"ird\\store\nname'
    _copy_model(fleet, odd, HOT)

    text = prometheus_text(store_status(Store(odd)))

    samples = parse_exposition(text)
    assert series(samples, "ollama_ramdisk_models", store=str(odd)) == 1
    assert 'we\\"ird\\\\store\\nname' in text


def test_prometheus_file_is_replaced_atomically(ramdisk: Path, tmp_path: Path) -> None:
    target_dir = tmp_path / "textfile"
    target_dir.mkdir()
    target = target_dir / "ollama_ramdisk.prom"
    full = store_status(Store(ramdisk))
    shutil.rmtree(ramdisk / "manifests/registry.ollama.ai/acme")
    smaller = store_status(Store(ramdisk))
    versions = {prometheus_text(full), prometheus_text(smaller)}
    assert len(versions) == 2
    write_prometheus(full, target)
    # Held open, the first file keeps its inode, which cannot then be reused.
    first = open(target, encoding="utf-8")  # noqa: SIM115 - closed below

    seen: set[str] = set()
    done = threading.Event()

    def read_while_written() -> None:
        while not done.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read_while_written)
    reader.start()
    try:
        for round_ in range(200):
            write_prometheus(smaller if round_ % 2 else full, target)
    finally:
        done.set()
        reader.join()

    assert seen <= versions  # never a half-written file
    assert target.read_text() == prometheus_text(smaller)
    # Renamed into place, never rewritten: the first file is intact under its old inode.
    assert os.fstat(first.fileno()).st_ino != target.stat().st_ino
    assert first.read() == prometheus_text(full)
    first.close()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(path.name for path in target_dir.iterdir()) == ["ollama_ramdisk.prom"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(ramdisk: Path, tmp_path: Path) -> None:
    target = tmp_path / "ollama_ramdisk.prom"
    status = store_status(Store(ramdisk))
    write_prometheus(status, target)
    before = target.read_text()
    broken = StoreStatus(store=status.store, models=(None,), mount=status.mount)  # type: ignore[arg-type]

    with pytest.raises(AttributeError):
        write_prometheus(broken, target)

    assert target.read_text() == before
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def test_a_missing_textfile_directory_is_an_os_error(ramdisk: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_prometheus(store_status(Store(ramdisk)), tmp_path / "absent" / "x.prom")

    assert not (tmp_path / "absent").exists()
