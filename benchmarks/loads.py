#!/usr/bin/env python3
"""Model loads and switches with the real Ollama and its engine, RAM disk against disk.

    sudo .venv/bin/python benchmarks/loads.py              # 5 repeats
    sudo .venv/bin/python benchmarks/loads.py --repeat 3

Two 1.07 GB random-weight llama models (scripts/make-test-models.py, imported
with the real `ollama create`) sit in a disk store; `ollama-ramdisk populate`
copies them into a fresh tmpfs. The real server (scripts/ensure-host.sh
ollama) then serves each store in turn, on a loopback port:

- a load: `/api/generate` with only `model` and `keep_alive` (and `use_mmap`
  for the mapped variant), unloaded with `keep_alive: 0` between runs; wall
  time and Ollama's own `load_duration`; from the RAM disk, from the disk
  store with a cold page cache (caches dropped before each load) and with a
  warm one; with Ollama's default on this host (no GPU: weights read into
  the engine's memory) and with `use_mmap: true`;
- the RAM disk as the role mounts it (huge=within_size: 2 MiB pages where the
  kernel's tmpfs has them), the same mount filled by `cp -a` instead (no 2 MiB
  pages), and with 4 KiB pages (huge=never);
- the disk store, cold, read at several bandwidths: the server and its engine
  run in a cgroup whose reads from the disk store's device are throttled
  (cgroup v2 io.max, or v1 blkio.throttle), so the table shows where the RAM
  disk pays and by how much, rather than assuming a slow disk;
- a switch: the two models alternating with OLLAMA_MAX_LOADED_MODELS=1, each
  request one token, RAM disk against the disk store (cold and warm);
- the engine alone: llama-server started with the arguments Ollama gives it,
  its /health polled every 10 ms, then one token. Ollama polls its engine
  every 250 ms (llm/llama_server.go, WaitUntilRunning), so its load times
  move in steps of 0.25 s; these rows show what the store changes in the
  engine itself.

Medians of the repeats, all conditions measured in one run and interleaved,
ratios against the RAM disk. Needs root (mount, drop_caches).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mounting

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path("/var/tmp/ollama-ramdisk-bench/loads")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "loads.md"
MODELS = ("bench-a:1b", "bench-b:1b")
# Disk read bandwidths the cold loads are also measured at (bytes/s).
READ_LIMITS = (3e9, 1e9, 0.5e9)
# The role's mount filled by cp -a: its writes get folios of their size (6.14
# and later), never a 2 MiB page that an engine could map with one entry.
FOLIOS = "RAM disk, huge=within_size, filled by cp -a (no 2 MiB pages)"


def last_line(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CGROUP_ROOT = Path("/sys/fs/cgroup")


def whole_disk(path: Path) -> str:
    """MAJ:MIN of the block device holding ``path`` (the disk, not a partition:
    throttles apply to whole devices)."""
    dev = os.stat(path).st_dev
    number = f"{os.major(dev)}:{os.minor(dev)}"
    sysfs = Path("/sys/dev/block") / number
    if not sysfs.exists():
        raise SystemExit(f"loads: {path} is not on a block device ({number}): no read limits")
    if (sysfs / "partition").exists():
        number = (sysfs.resolve().parent / "dev").read_text().strip()
    return number


class ReadLimit:
    """A cgroup whose reads from one disk are limited to ``rate`` bytes/s."""

    def __init__(self, device: str, rate: int, name: str) -> None:
        self.v2 = "io" in (CGROUP_ROOT / "cgroup.controllers").read_text().split() if (
            CGROUP_ROOT / "cgroup.controllers").exists() else False  # fmt: skip
        base = CGROUP_ROOT if self.v2 else CGROUP_ROOT / "blkio"
        if not self.v2 and not (base / "blkio.throttle.read_bps_device").exists():
            raise SystemExit("loads: neither cgroup v2 io nor v1 blkio is available")
        self.path = base / name
        self.path.mkdir(exist_ok=True)
        if self.v2:
            with contextlib.suppress(OSError):
                (CGROUP_ROOT / "cgroup.subtree_control").write_text("+io")
            (self.path / "io.max").write_text(f"{device} rbps={rate}\n")
        else:
            (self.path / "blkio.throttle.read_bps_device").write_text(f"{device} {rate}\n")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


class Server:
    """The real `ollama serve` on a store, reached on a loopback port."""

    def __init__(
        self, prefix: Path, store: Path, log: Path, max_loaded: int, limit: ReadLimit | None = None
    ) -> None:
        self.url = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "OLLAMA_HOST": self.url,
            "OLLAMA_MODELS": str(store),
            "OLLAMA_MAX_LOADED_MODELS": str(max_loaded),
            "OLLAMA_KEEP_ALIVE": "10m",
        }
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(prefix / "bin" / "ollama"), "serve"], env=env, stdout=output, stderr=output
            )
        if limit is not None:
            # Before the first load: the engine it starts inherits the cgroup.
            limit.add(self.process.pid)
        for _ in range(300):
            with contextlib.suppress(OSError):
                self.call("GET", "/api/version")
                return
            time.sleep(0.1)
        raise SystemExit(f"loads: the server on {store} did not answer; see {log}")

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.url}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def load(self, model: str, mmap: bool | None) -> tuple[float, float]:
        """(wall seconds, Ollama's load_duration seconds) of one load and one token;
        ``mmap`` None leaves ``use_mmap`` to Ollama.

        A request with only ``model`` and ``keep_alive`` loads too, but its answer
        carries no load_duration: one token costs milliseconds and reports it."""
        options: dict = {"num_predict": 1, **({} if mmap is None else {"use_mmap": mmap})}
        body = {"model": model, "prompt": "Hi", "stream": False, "keep_alive": "10m",
                "options": options}  # fmt: skip
        started = time.monotonic()
        answer = self.call("POST", "/api/generate", body)
        return time.monotonic() - started, answer.get("load_duration", 0) / 1e9

    def one_token(self, model: str) -> float:
        started = time.monotonic()
        self.call(
            "POST",
            "/api/generate",
            {"model": model, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
        )
        return time.monotonic() - started

    def unload_all(self) -> None:
        for model in self.call("GET", "/api/ps").get("models", []):
            self.call("POST", "/api/generate", {"model": model["name"], "keep_alive": 0})
        for _ in range(200):
            if not self.call("GET", "/api/ps").get("models"):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


@dataclass
class Condition:
    label: str
    store: Path
    cold: bool = False
    model: str = MODELS[0]  # the larger of the two, on a GPU host (--models)
    read_limit: int | None = None  # bytes/s from the disk store's device
    samples: list[float] = field(default_factory=list)
    load_durations: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@contextlib.contextmanager
def ramdisk(
    workdir: Path, disk_store: Path, cli: list[str], huge: str, *, by_cp: bool = False,
    models: list[str] | tuple[str, ...] = MODELS,
) -> Iterator[Path]:  # fmt: skip
    """A fresh tmpfs holding the disk store's models, filled by populate or by
    ``cp -a`` (whose writes never cover a whole 2 MiB page)."""
    size = sum(f.stat().st_size for f in (disk_store / "blobs").iterdir()) * 12 // 10 + (64 << 20)
    options = f"size={size},mode=0755,huge={huge}"
    prefix = f"ramdisk-{huge}{'-cp' if by_cp else ''}-"
    with mounting.fresh_tmpfs(workdir, options, prefix=prefix) as mount:
        if by_cp:
            subprocess.run(["cp", "-a", f"{disk_store}/.", str(mount / "models")], check=True)
        else:
            subprocess.run(
                [*cli, "populate", "-q", "--source", str(disk_store), "--dest",
                 str(mount / "models"), *models],
                check=True,
            )  # fmt: skip
        yield mount / "models"


def prepare(workdir: Path) -> tuple[Path, Path, Path]:
    prefix = Path(last_line(str(ROOT / "scripts" / "ensure-host.sh"), "ollama"))
    models = Path(last_line(str(ROOT / "scripts" / "ensure-host.sh"), "models"))
    pin = prefix.name.removeprefix("ollama-")
    vocab = prefix.parent / f"build-{pin}" / "ggml-vocab-llama-spm.gguf"
    archive = Path(last_line(sys.executable, str(ROOT / "scripts" / "make-test-models.py"),
                             "--ollama", str(prefix), "--vocab", str(vocab),
                             "--out", str(models), "--set", "bench"))  # fmt: skip
    disk_store = workdir / f"disk-{archive.stem}"
    if not (disk_store / "manifests").is_dir():
        disk_store.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(disk_store)  # noqa: S202 - our own archive
    return prefix, disk_store, archive


def measure_loads(
    prefix: Path, conditions: list[Condition], mmap: bool | None, repeat: int, log: Path
) -> None:
    limits: dict[str, ReadLimit] = {}
    for index, condition in enumerate(conditions):
        if condition.read_limit is not None:
            device = whole_disk(condition.store)
            limits[condition.label] = ReadLimit(
                device, condition.read_limit, f"ollama-ramdisk-bench-{os.getpid()}-{index}"
            )
    servers = {
        c.label: Server(prefix, c.store, log, max_loaded=1, limit=limits.get(c.label))
        for c in conditions
    }
    try:
        for _ in range(repeat):
            for condition in conditions:  # interleaved: the machine's noise hits all alike
                server = servers[condition.label]
                server.unload_all()
                if condition.cold:
                    drop_caches()
                elif not condition.samples:
                    server.load(condition.model, mmap)  # warm the page cache once
                    server.unload_all()
                wall, load_duration = server.load(condition.model, mmap)
                condition.samples.append(wall)
                condition.load_durations.append(load_duration)
                # No engine may keep the weights mapped: drop_caches leaves mapped
                # pages in memory, and the next "cold" load would find them there.
                server.unload_all()
    finally:
        for server in servers.values():
            server.stop()
        for limit in limits.values():
            limit.remove()


# How Ollama starts its engine for these models on this host (its server log,
# "starting llama-server"): the same arguments, without Ollama around it.
ENGINE_ARGS = ("--host", "127.0.0.1", "--no-webui", "--offline", "-c", "512", "-np", "1",
               "--no-jinja", "--chat-template", "chatml", "--flash-attn", "auto",
               "-b", "512", "-ub", "512")  # fmt: skip


def engine_args_from_log(log: Path, blob: str) -> tuple[str, ...] | None:
    """The arguments of the last engine Ollama started on ``blob`` (its log's
    "starting llama-server" line), without the model, the port and the load
    mode: on a GPU host Ollama chooses them from the devices it found."""
    found = None
    for line in log.read_text(errors="replace").splitlines():
        if 'msg="starting llama-server"' in line and ' cmd="' in line and blob in line:
            found = line.split(' cmd="', 1)[1].split('"', 1)[0].split()[1:]
    if found is None:
        return None
    kept: list[str] = []
    skip = False
    for word in found:
        if skip:
            skip = False
        elif word in ("--model", "--port", "--load-mode"):
            skip = True
        else:
            kept.append(word)
    return tuple(kept)


def engine_load(prefix: Path, weights: Path, mmap: bool, log: Path, *,
                limit: ReadLimit | None = None,
                engine_args: tuple[str, ...] = ENGINE_ARGS) -> float:  # fmt: skip
    """Seconds from starting the engine alone to its first token: /health polled
    every 10 ms, then one token. Ollama polls its engine every 250 ms instead."""
    port = free_port()
    load_mode = () if mmap else ("--load-mode", "none")
    argv = [str(prefix / "lib" / "ollama" / "llama-server"), "--model", str(weights),
            "--port", str(port), *engine_args, *load_mode]  # fmt: skip
    started = time.monotonic()
    with log.open("ab") as output:
        engine = subprocess.Popen(argv, stdout=output, stderr=output)
    try:
        if limit is not None:
            limit.add(engine.pid)
        while True:
            health = f"http://127.0.0.1:{port}/health"  # 503 while loading: an OSError
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=5):
                break
            if engine.poll() is not None:
                raise SystemExit(f"loads: the engine ended while loading {weights}; see {log}")
            if time.monotonic() - started > 300:
                raise SystemExit(f"loads: the engine did not load {weights}; see {log}")
            time.sleep(0.01)
        body = json.dumps({"prompt": "Hi", "n_predict": 1}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/completion", data=body,
                                         method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - loopback
            response.read()
        return time.monotonic() - started
    finally:
        engine.terminate()
        engine.wait(timeout=60)


def measure_engine(prefix: Path, conditions: list[Condition], mmap: bool, repeat: int,
                   log: Path, *, engine_args: tuple[str, ...] = ENGINE_ARGS) -> None:  # fmt: skip
    """The engine alone on each store, interleaved, as measure_loads does with Ollama."""
    limits: dict[str, ReadLimit] = {}
    for index, condition in enumerate(conditions):
        if condition.read_limit is not None:
            name = f"ollama-ramdisk-engine-{os.getpid()}-{index}"
            limits[condition.label] = ReadLimit(
                whole_disk(condition.store), condition.read_limit, name
            )
    try:
        for _ in range(repeat):
            for condition in conditions:
                weights = weights_path(condition.store, condition.model)
                if condition.cold:
                    drop_caches()
                elif not condition.samples:  # warm the page cache once
                    engine_load(prefix, weights, mmap, log, engine_args=engine_args)
                condition.samples.append(engine_load(
                    prefix, weights, mmap, log, limit=limits.get(condition.label),
                    engine_args=engine_args,
                ))  # fmt: skip
    finally:
        for limit in limits.values():
            limit.remove()


def measure_switches(prefix: Path, conditions: list[Condition], repeat: int, log: Path, *,
                     models: tuple[str, ...] = MODELS) -> None:  # fmt: skip
    servers = {c.label: Server(prefix, c.store, log, max_loaded=1) for c in conditions}
    try:
        for server in servers.values():
            server.one_token(models[1])
        for round_ in range(repeat):
            for condition in conditions:
                server = servers[condition.label]
                for model in (models[round_ % 2], models[(round_ + 1) % 2]):
                    if condition.cold:
                        # Other engines on the same store would keep its pages mapped,
                        # and so in memory whatever drop_caches does.
                        for other in conditions:
                            if other is not condition and other.store == condition.store:
                                servers[other.label].unload_all()
                        drop_caches()
                    condition.samples.append(server.one_token(model))
    finally:
        for server in servers.values():
            server.stop()


def read_seconds(path: Path, cold: bool) -> float:
    """Reading the whole blob once: the I/O a load that copies must do."""
    if cold:
        drop_caches()
    started = time.monotonic()
    with path.open("rb", buffering=0) as handle:
        while handle.read(8 << 20):
            pass
    return time.monotonic() - started


def reads_table(reads: list[tuple[str, Path, bool]]) -> list[str]:
    """Reading the weights once from each store (label, blob, cold): the physical
    bound of a load that copies them."""
    lines = ["### Reading the weights once (what a copying load must read)", "",
             "| from | median | GB/s |", "|---|---|---|"]  # fmt: skip
    for label, path, cold in reads:
        seconds = statistics.median(read_seconds(path, cold) for _ in range(3))
        lines.append(f"| {label} | {seconds:.2f} s | {path.stat().st_size / seconds / 1e9:.1f} |")
    return [*lines, ""]


def weights_path(store: Path, model: str) -> Path:
    name, _, tag = model.partition(":")
    manifest = json.loads((store / "manifests/registry.ollama.ai/library" / name / tag).read_text())
    (layer,) = [x for x in manifest["layers"] if x["mediaType"].endswith(".model")]
    return store / "blobs" / str(layer["digest"]).replace(":", "-")


def limited(disk_store: Path, rate: float, model: str = MODELS[0]) -> Condition:
    label = f"disk store, cold, reads limited to {rate / 1e9:g} GB/s"
    return Condition(label, disk_store, cold=True, model=model, read_limit=int(rate))


def table(title: str, conditions: list[Condition], with_load_duration: bool) -> list[str]:
    """Each condition's median, and how many times longer than the first (the RAM disk) it takes."""
    base = conditions[0].median
    head = "| where the model is | median wall | time vs the RAM disk |"
    rule = "|---|---|---|"
    if with_load_duration:
        head += " Ollama's load_duration (median) |"
        rule += "---|"
    lines = [f"### {title}", "", head, rule]
    for condition in conditions:
        row = f"| {condition.label} | {condition.median:.2f} s | {condition.median / base:.2f}x |"
        if with_load_duration:
            row += f" {statistics.median(condition.load_durations):.2f} s |"
        lines.append(row)
    return [*lines, ""]


# The README's columns: (heading, condition label).
SUMMARY_COLUMNS = (
    ("RAM disk (huge pages)", "RAM disk, huge=within_size (the role's default)"),
    ("RAM disk, 4 KiB pages", "RAM disk, 4 KiB pages (huge=never)"),
    ("disk, cold", "disk store, cold page cache"),
    ("disk, cold, 1 GB/s", "disk store, cold, reads limited to 1 GB/s"),
    ("disk, cold, 0.5 GB/s", "disk store, cold, reads limited to 0.5 GB/s"),
    ("disk, warm", "disk store, warm page cache"),
)


def summary(measured: dict[str, list[Condition]]) -> str:
    """The README's table: a load's wall time per store, and how many times the RAM
    disk's time the disk store's is (the columns this run measured)."""
    present = {condition.label for conditions in measured.values() for condition in conditions}
    columns = [(head, label) for head, label in SUMMARY_COLUMNS if label in present]
    heads = " | ".join(head for head, _ in columns)
    lines = [f"| a load, start to first token | {heads} |",
             "|---|" + "---|" * len(columns)]  # fmt: skip
    for what, conditions in measured.items():
        by_label = {condition.label: condition for condition in conditions}
        base = conditions[0].median
        cells = []
        for _, label in columns:
            median = by_label[label].median
            ratio = f" ({median / base:.2f}x)" if label.startswith("disk store, cold") else ""
            cells.append(f"{median:.2f} s{ratio}")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--prefix", type=Path,
                        help="an Ollama install (bin/ollama, lib/ollama/llama-server);"
                             " default: the one scripts/ensure-host.sh builds")  # fmt: skip
    parser.add_argument(
        "--disk-store",
        type=Path,
        help="a store holding --models and --floor; default: the bench set",
    )
    parser.add_argument("--models", nargs=2, default=list(MODELS), metavar=("A", "B"),
                        help="the two models of a switch; A is the one loaded")  # fmt: skip
    parser.add_argument(
        "--floor", default="mistral:7b", help="a tiny model: what a load costs whatever the store"
    )
    parser.add_argument("--gpu", action="store_true",
                        help="a GPU host (benchmarks/gpu): no read-limited or cp -a rows; the"
                             " engine alone gets the arguments Ollama gave it; what the plan"
                             " said against what Ollama did, and the engine's memory")  # fmt: skip
    return parser.parse_args(argv)


def stores_of(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(Ollama's prefix, the disk store, the store of the floor model)."""
    if args.prefix is not None and args.disk_store is not None:
        return args.prefix, args.disk_store, args.disk_store
    prefix, disk_store, small_archive = prepare(args.workdir)
    floor_store = args.workdir / "small"
    if not (floor_store / "manifests").is_dir():
        floor_store.mkdir(parents=True, exist_ok=True)
        with tarfile.open(next(small_archive.parent.glob("store-small-*.tar"))) as tar:
            tar.extractall(floor_store)  # noqa: S202 - our own archive
    return prefix, disk_store, floor_store


def load_modes(gpu: bool) -> list[tuple[bool | None, bool | None, str, str]]:
    """(use_mmap asked of Ollama, None for its default; the engine alone's mmap,
    None for no such rows; the table's title; the README's row)."""
    if gpu:  # Ollama's own choice there is checked apart (gpu_checks.py)
        return [(True, True, "use_mmap: true", "Ollama, use_mmap: true"),
                (False, False, "use_mmap: false", "Ollama, use_mmap: false")]  # fmt: skip
    return [(None, False, "Ollama's default here (no GPU: no mmap)",
             "Ollama, no mmap (its default here)"),
            (True, True, "use_mmap: true", "Ollama, use_mmap: true")]  # fmt: skip


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("loads: needs root (tmpfs mounts, drop_caches)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    models = tuple(args.models)
    loaded = models[0]
    prefix, disk_store, floor_store = stores_of(args)
    cli = [sys.executable, "-m", "ollama_ramdisk.cli"]
    os.environ["PYTHONPATH"] = str(ROOT / "module_utils")
    log = args.workdir / "serve.log"
    sizes = [weights_path(disk_store, model).stat().st_size for model in models]
    out: list[str] = [
        "## Loads and switches with the real Ollama",
        "",
        f"Ollama {prefix.name}, models of {' and '.join(f'{size / 1e9:.2f} GB' for size in sizes)},"
        f" {os.cpu_count()} cores, median of {args.repeat}, `benchmarks/loads.py"
        f"{' --gpu' if args.gpu else ''}`.",
        "",
    ]
    in_ram = [*models, *([args.floor] if floor_store == disk_store else [])]
    with contextlib.ExitStack() as mounts:

        def ram(huge: str, by_cp: bool = False) -> Path:
            return mounts.enter_context(
                ramdisk(args.workdir, disk_store, cli, huge, by_cp=by_cp, models=in_ram)
            )

        ram_store, small_pages_store = ram("within_size"), ram("never")
        folio_store = None if args.gpu else ram("within_size", by_cp=True)

        def conditions() -> list[Condition]:
            return [
                Condition("RAM disk, huge=within_size (the role's default)", ram_store,
                          model=loaded),
                Condition("RAM disk, 4 KiB pages (huge=never)", small_pages_store, model=loaded),
                *([Condition(FOLIOS, folio_store, model=loaded)] if folio_store else []),
                Condition("disk store, cold page cache", disk_store, cold=True, model=loaded),
                *(limited(disk_store, rate, loaded) for rate in ([] if args.gpu else READ_LIMITS)),
                Condition("disk store, warm page cache", disk_store, model=loaded),
                # What every load pays whatever the store: starting the engine.
                Condition("floor: a tiny model (engine start)", floor_store, model=args.floor),
            ]  # fmt: skip

        stores = [("RAM disk, huge=within_size", ram_store, False),
                  ("RAM disk, 4 KiB pages", small_pages_store, False),
                  *([(FOLIOS, folio_store, False)] if folio_store else []),
                  ("disk store, cold page cache", disk_store, True),
                  ("disk store, warm page cache", disk_store, False)]  # fmt: skip
        out += reads_table([(label, weights_path(store, loaded), cold)
                            for label, store, cold in stores])  # fmt: skip
        measured: dict[str, list[Condition]] = {}
        for asked, mmap, what, row in load_modes(args.gpu):
            loads = conditions()
            measure_loads(prefix, loads, asked, args.repeat, log)
            out += table(f"A load, {what}", loads, with_load_duration=True)
            measured[row] = loads
            if mmap is None:
                continue  # the engine alone has no default to compare: mmap or not
            blob = weights_path(disk_store, loaded).name
            engine_args = (engine_args_from_log(log, blob) if args.gpu else None) or ENGINE_ARGS
            alone = conditions()
            measure_engine(prefix, alone, mmap, args.repeat, log, engine_args=engine_args)
            out += table(f"The engine alone, {'mmap' if mmap else '--load-mode none'}: started"
                         f" as Ollama starts it ({' '.join(engine_args)}), to its first token",
                         alone, with_load_duration=False)  # fmt: skip
            measured[f"the engine alone, {'mmap' if mmap else 'no mmap'}"] = alone
        base = {condition.label: condition for condition in conditions()}
        switches = [
            base["RAM disk, huge=within_size (the role's default)"],
            base["disk store, cold page cache"],
            base["disk store, warm page cache"],
        ]
        measure_switches(prefix, switches, args.repeat, log, models=models)
        out += table("A switch between two models (OLLAMA_MAX_LOADED_MODELS=1)", switches, False)
        if args.gpu:
            sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
            import gpu_checks  # noqa: PLC0415 - only on a GPU host

            out += gpu_checks.report(
                prefix, cli, disk_store, ram_store, models=models, workdir=args.workdir
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(out))
    args.output.with_suffix(".summary.md").write_text(summary(measured))
    measured["a switch"] = switches
    raw = {what: [{"label": c.label, "seconds": c.samples, "load_duration": c.load_durations}
                  for c in conditions] for what, conditions in measured.items()}  # fmt: skip
    args.output.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
