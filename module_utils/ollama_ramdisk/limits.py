"""What a load adds to the RAM disk, and the memory limits both must fit under.

Read in Ollama's scheduler (server/sched.go): unless a request or Modelfile
sets ``use_mmap``, Ollama turns mmap off on a host without GPUs, and on Linux
with discrete GPUs when the memory available (``MemAvailable``, which does
not count tmpfs pages) is below the model file plus the mapped models plus
max(8 GB, 10% of memory). Without mmap the engine reads the weights into its
own memory: a model in the RAM disk then costs twice its size while loaded.

tmpfs pages are charged to the cgroup that writes them, and ollama.service's
ExecStartPre refills the RAM disk at every boot: a ``MemoryMax=`` or
``MemoryHigh=`` of the unit or of a slice above it must hold the RAM disk plus
what a load adds, or the server is killed or throttled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidOption
from .memory import UNLIMITED_THRESHOLD
from .sizes import human, is_decimal
from .store import Manifest
from .systemd_units import show

GB = 1000**3  # Ollama's format.GigaByte: its 8 GB headroom is decimal
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
WEIGHT_MEDIA_TYPES = frozenset({MODEL_MEDIA_TYPE, "application/vnd.ollama.image.projector"})
_UNLIMITED = {"", "infinity", "max"}


def weight_bytes(manifest: Manifest) -> int:
    """The bytes a load reads into memory when it does not map: weights and projector."""
    return sum(blob.size for blob in manifest.blobs if blob.media_type in WEIGHT_MEDIA_TYPES)


def model_file_bytes(manifest: Manifest) -> int:
    """The model file Ollama sizes its mmap rule by (its ``image.model`` layer)."""
    return max((b.size for b in manifest.blobs if b.media_type == MODEL_MEDIA_TYPE), default=0)


def mmap_headroom(mem_total: int) -> int:
    return max(8 * GB, mem_total // 10)


@dataclass(frozen=True)
class LoadMode:
    """Whether Ollama's loads on this host map the weights, why, and what a copy costs."""

    mmap: bool
    reason: str
    copy_bytes: int
    # Memory that must stay available (beside the RAM disk) for Ollama to map the
    # largest hot model on a GPU host: its file plus max(8 GB, 10%).
    mmap_needs: int


def load_mode(hot: Sequence[Manifest], gpus: bool, mem_total: int, ram_disk: int) -> LoadMode:
    """How loads of the largest hot model behave with the RAM disk full."""
    largest = max(hot, key=model_file_bytes, default=None)
    copy = weight_bytes(largest) if largest else 0
    needs = (model_file_bytes(largest) if largest else 0) + mmap_headroom(mem_total)
    if not gpus:
        return LoadMode(
            False,
            "no GPU: Ollama turns mmap off and reads the weights into the engine's own"
            " memory, a second copy beside the RAM disk",
            copy,
            needs,
        )
    available = mem_total - ram_disk
    if available >= needs:
        return LoadMode(
            True,
            f"GPUs: with the RAM disk full {human(available)} stays available, at least the"
            f" largest hot model plus max(8 GB, 10% of memory) ({human(needs)}), so Ollama"
            " maps the weights",
            0,
            needs,
        )
    return LoadMode(
        False,
        f"GPUs, but with the RAM disk full only {human(max(available, 0))} stays available,"
        f" below the largest hot model plus max(8 GB, 10% of memory) ({human(needs)}):"
        " Ollama turns mmap off and copies the weights",
        copy,
        needs,
    )


def detect_gpus(
    nvidia: Path = Path("/proc/driver/nvidia/gpus"),
    kfd_nodes: Path = Path("/sys/class/kfd/kfd/topology/nodes"),
) -> bool:
    """NVIDIA (driver loaded with a GPU) or AMD (a KFD node with compute units)."""
    try:
        if nvidia.is_dir() and any(nvidia.iterdir()):
            return True
        for node in kfd_nodes.iterdir() if kfd_nodes.is_dir() else []:
            properties = (node / "properties").read_text()
            for line in properties.splitlines():
                key, _sep, value = line.partition(" ")
                if key == "simd_count" and value.strip().isdigit() and int(value) > 0:
                    return True
    except OSError:
        return False
    return False


@dataclass(frozen=True)
class Limit:
    """A ceiling on memory, what the plan needs under it, and where it comes from."""

    source: str
    bytes: int
    needed: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.bytes

    @property
    def slack(self) -> int:
        return self.bytes - self.needed

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "bytes": self.bytes,
            "needed": self.needed,
            "fits": self.fits,
        }


def parse_limit(text: str, where: str) -> int | None:
    """A memory.max/memory.high file or a MemoryMax= value: bytes, or None for no limit."""
    value = text.strip()
    if value in _UNLIMITED:
        return None
    if not is_decimal(value):
        raise InvalidOption(f"{where}: {value!r} is not a memory limit")
    number = int(value)
    return None if number >= UNLIMITED_THRESHOLD else number


def cgroup_limits(cgroup_dir: Path, stop_at: Path) -> list[tuple[str, int]]:
    """memory.max and memory.high of a cgroup (v2) and of every parent up to ``stop_at``."""
    found: list[tuple[str, int]] = []
    current = cgroup_dir
    while True:
        for name in ("memory.max", "memory.high"):
            try:
                limit = parse_limit((current / name).read_text(), str(current / name))
            except FileNotFoundError:
                continue
            if limit is not None:
                found.append((str(current / name), limit))
        if current in (stop_at, current.parent):
            return found
        current = current.parent


def unit_limits(unit: str) -> list[tuple[str, int]]:
    """MemoryMax= and MemoryHigh= of a unit and of each slice above it (systemd's values)."""
    found: list[tuple[str, int]] = []
    current = unit
    for _level in range(16):  # slices nest a few levels; never loop on a bad answer
        properties = show(current, ("MemoryMax", "MemoryHigh", "Slice", "LoadState"))
        if current == unit and properties.get("LoadState") == "not-found":
            raise InvalidOption(f"unit: {unit} is not installed on this host")
        for key in ("MemoryMax", "MemoryHigh"):
            limit = parse_limit(properties.get(key, ""), f"{current} {key}")
            if limit is not None:
                found.append((f"{current} {key}", limit))
        parent = properties.get("Slice", "")
        if not parent or current in (parent, "-.slice"):
            break
        current = parent
    return found


def service_limits(
    unit: str | None = None,
    memory_max: int | None = None,
    memory_high: int | None = None,
    cgroup: Path | None = None,
) -> list[tuple[str, int]]:
    """The service's ceilings: given values (planning for another host), a cgroup
    directory's files (the unit's cgroup and its parents), or systemd's settings."""
    name = unit or "the service"
    given = [(f"{name} MemoryMax", memory_max), (f"{name} MemoryHigh", memory_high)]
    if memory_max is not None or memory_high is not None:
        return [(source, limit) for source, limit in given if limit is not None]
    if cgroup is not None:
        if not cgroup.is_dir():
            raise InvalidOption(f"unit-cgroup: {cgroup} is not a cgroup directory")
        return cgroup_limits(cgroup, Path(cgroup.anchor))
    return unit_limits(unit) if unit else []
