"""On a GPU host: what the plan said against what Ollama did, and where the engine's memory is.

Called by `benchmarks/loads.py --gpu` once its tables are measured:

- `ollama-ramdisk plan --json` on the disk store's models: `gpus`, `mmap`,
  `mmap_reason` and the memory figures the rule used;
- a load of the larger model from the RAM disk through Ollama with its own
  default, then with `use_mmap` true and false, and one from the disk store:
  the engine's `/proc/PID/cmdline` (`--load-mode none` or not), whether its
  `/proc/PID/maps` maps the weights, its resident memory split as the kernel
  counts it (`RssAnon`, `RssFile`, `RssShmem`: a mapped tmpfs file is shmem),
  `/api/ps`'s share on the GPU and the GPU memory `nvidia-smi` gives it;
- the physical bounds: host-to-device copies from pinned and pageable memory
  (`h2d`, built from h2d.cu by run.sh, given as OLLAMA_RAMDISK_H2D).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import loads


def _engine_of(blob: Path) -> int | None:
    """The pid of the llama-server that has ``blob`` as its model."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"llama-server") and str(blob).encode() in argv:
            return int(entry.name)
    return None


def _status_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0])
    return fields


def _nvidia_smi(*query: str) -> str:
    """nvidia-smi's answer, or why there is none (a host without it: a dry run)."""
    try:
        done = subprocess.run(["nvidia-smi", *query], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ""
    return done.stdout.strip() or done.stderr.strip()


def _gpu_mib(pid: int) -> str:
    listed = _nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    for line in listed.splitlines():
        found, _, used = line.partition(",")
        if found.strip() == str(pid) and used.strip().isdigit():
            return f"{int(used) / 1024:.1f} GiB"
    return "not listed"


def _observe(server: loads.Server, store: Path, model: str, mmap: bool | None) -> dict:
    server.unload_all()
    server.load(model, mmap)
    blob = loads.weights_path(store, model)
    pid = _engine_of(blob)
    if pid is None:
        return {"error": f"no llama-server with --model {blob}"}
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    maps = Path(f"/proc/{pid}/maps").read_text()
    ps = server.call("GET", "/api/ps").get("models", [])
    size = sum(m.get("size", 0) for m in ps)
    vram = sum(m.get("size_vram", 0) for m in ps)
    seen = {
        "load_mode_none": b"none" in cmdline and b"--load-mode" in cmdline,
        "weights_mapped": str(blob) in maps,
        "memory_kib": _status_kib(pid),
        "on_gpu": f"{vram / size:.0%}" if size else "unknown",
        "gpu_memory": _gpu_mib(pid),
    }
    server.unload_all()
    return seen


def _row(what: str, seen: dict) -> str:
    if "error" in seen:
        return f"| {what} | {seen['error']} | | | | | | |"
    kib = seen["memory_kib"]

    def gib(key: str) -> str:
        return f"{kib.get(key, 0) / 2**20:.2f}"

    return (
        f"| {what} | {'none' if seen['load_mode_none'] else 'mmap'} |"
        f" {'yes' if seen['weights_mapped'] else 'no'} | {gib('RssAnon')} | {gib('RssFile')} |"
        f" {gib('RssShmem')} | {seen['on_gpu']} | {seen['gpu_memory']} |"
    )


def _bandwidth() -> list[str]:
    h2d = os.environ.get("OLLAMA_RAMDISK_H2D")
    if not h2d:
        return ["(no h2d binary given: OLLAMA_RAMDISK_H2D unset)", ""]
    done = subprocess.run([h2d, "4"], capture_output=True, text=True, check=False, timeout=300)
    if done.returncode:
        return [f"h2d failed: {done.stderr.strip()}", ""]
    rates = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return [
        "| host-to-device copy of 4 GiB (median of 5) | GB/s |",
        "|---|---|",
        f"| from pinned memory (cudaMallocHost) | {rates['pinned'].split()[0]} |",
        f"| from pageable memory (malloc) | {rates['pageable'].split()[0]} |",
        "",
    ]


def report(
    prefix: Path,
    cli: list[str],
    disk_store: Path,
    ram_store: Path,
    *,
    models: tuple[str, ...],
    workdir: Path,
) -> list[str]:
    plan = subprocess.run(
        [*cli, "plan", "--json", "--source", str(disk_store), *models],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    planned = json.loads(plan.stdout) if plan.stdout.strip() else {"error": plan.stderr}
    keys = ("gpus", "mmap", "mmap_reason", "mem_total", "size_bytes", "load_copy_bytes", "fits")
    out = [
        "### What the plan said, and what Ollama did",
        "",
        f"`ollama-ramdisk plan --json` of {', '.join(models)} on this host:",
        "",
        "```json",
        json.dumps({key: planned.get(key) for key in keys}, indent=2),
        "```",
        "",
        "| a load of the larger model, then one token | engine's load mode |"
        " weights mapped (/proc/PID/maps) | RssAnon GiB | RssFile GiB | RssShmem GiB |"
        " on the GPU (/api/ps) | GPU memory (nvidia-smi) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    log = workdir / "checks.log"
    for store, where in ((ram_store, "RAM disk"), (disk_store, "disk store")):
        server = loads.Server(prefix, store, log, max_loaded=1)
        try:
            modes = (
                (None, "Ollama's default"),
                (True, "use_mmap: true"),
                (False, "use_mmap: false"),
            )
            for mmap, what in modes if store == ram_store else modes[:1]:
                out.append(_row(f"{where}, {what}", _observe(server, store, models[0], mmap)))
        finally:
            server.stop()
    decisions = [line for line in log.read_text(errors="replace").splitlines()
                 if "mmap" in line and "msg=" in line]  # fmt: skip
    out += ["", "Ollama's log on mmap (its own words):", "", "```",
            *(decisions[-6:] or ["(nothing: it kept its default, mmap)"]), "```", ""]  # fmt: skip
    out += ["### The physical bounds", "", *_bandwidth()]
    gpu = _nvidia_smi(
        "--query-gpu=name,memory.total,driver_version,pcie.link.gen.current,"
        "pcie.link.width.current", "--format=csv,noheader",
    )  # fmt: skip
    out += [f"GPU: {gpu or 'none (nvidia-smi not found)'}", ""]
    return out
