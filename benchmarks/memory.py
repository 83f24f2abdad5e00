#!/usr/bin/env python3
"""What a loaded model costs in memory when it sits in the RAM disk: mapped and not mapped.

    sudo .venv/bin/python benchmarks/memory.py            # 3 repeats

The 1.07 GB random-weight llama model of benchmarks/loads.py is copied into a
fresh tmpfs by `ollama-ramdisk populate`; the real server serves it from there
on a loopback port. After each load (one token), the engine's
/proc/PID/smaps_rollup is read: Rss, Pss and its anonymous, file and shmem
parts, against the model file's size, with Ollama's default on this host (no
GPU: mmap off) and with `use_mmap: true`. The tmpfs pages themselves are
counted apart (the RAM disk's `used`). Medians of the repeats, both modes
interleaved. Needs root (mount).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from loads import MODELS, ROOT, Server, prepare, ramdisk, weights_path

DEFAULT_WORKDIR = Path("/var/tmp/ollama-ramdisk-bench/loads")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "memory.md"
FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")


def engine_pid(blob: Path) -> int:
    found = subprocess.run(
        ["pgrep", "-f", "--", f"--model {blob}"], capture_output=True, text=True, check=False
    )
    pids = [int(pid) for pid in found.stdout.split()]
    if len(pids) != 1:
        raise SystemExit(f"memory: expected one engine with --model {blob}, found {pids}")
    return pids[0]


def rollup(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in FIELDS:
            values[key] = int(rest.split()[0]) * 1024
    return values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    prefix, disk_store, _ = prepare(args.workdir)
    cli = [sys.executable, "-m", "ollama_ramdisk.cli"]
    log = args.workdir / "memory-server.log"
    samples: dict[bool, list[dict[str, int]]] = {False: [], True: []}
    with ramdisk(args.workdir, disk_store, cli) as store:
        blob = weights_path(store, MODELS[0])
        size = blob.stat().st_size
        used = int(subprocess.run(["df", "--output=used", "-B1", str(store)], capture_output=True,
                                  text=True, check=True).stdout.split()[-1])  # fmt: skip
        server = Server(prefix, store, log, max_loaded=1)
        try:
            for _ in range(args.repeat):
                for mmap in (False, True):
                    server.unload_all()
                    server.load(MODELS[0], mmap)
                    samples[mmap].append(rollup(engine_pid(blob)))
        finally:
            server.stop()
    lines = [
        f"Model file {size / 1e9:.2f} GB in the RAM disk (tmpfs used: {used / 1e9:.2f} GB);"
        f" the engine's /proc/PID/smaps_rollup after one token, median of {args.repeat}:",
        "",
        "| load | " + " | ".join(FIELDS) + " | Pss / model file |",
        "|---|" + "---|" * (len(FIELDS) + 1),
    ]
    for mmap, label in ((False, "not mapped (Ollama's default without GPUs)"),
                        (True, "mapped (`use_mmap: true`)")):  # fmt: skip
        medians = {key: statistics.median(s[key] for s in samples[mmap]) for key in FIELDS}
        cells = " | ".join(f"{medians[key] / 1e9:.2f} GB" for key in FIELDS)
        lines.append(f"| {label} | {cells} | {medians['Pss'] / size:.2f} |")
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    print(f"memory: written to {args.output.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
