#!/usr/bin/env python3
"""A fleet's time to filled RAM disks: through the mirror, or `ollama pull` on each host.

    sudo .venv/bin/python benchmarks/distribution.py              # 1 and 3 hosts, 1 repeat
    sudo .venv/bin/python benchmarks/distribution.py --repeat 3 --uplink 50m

The internet is played by a registry behind a shared, throttled link
(--uplink, bytes per second for all hosts together, as a site's uplink is
shared); the fleet's mirror is a second registry on the local network
(loopback here, unthrottled). Both are Docker's distribution registry
(scripts/ensure-host.sh registry), each "host" is a disk store with its own
real `ollama serve` and a RAM disk (a real tmpfs) that `ollama-ramdisk
populate` fills. The model is the large test model (1.09 GB of random
weights).

- by hand: every host runs `ollama pull` of the set from the internet, at once,
  then the RAM disk is filled;
- through the mirror: every host runs `ollama-ramdisk pull --mirror` (what
  site.yml runs), at once, then the RAM disk is filled. Seeding the mirror
  (one pull from the internet and a push) is paid once per set and reported
  on its own line.

Bytes are read from each registry's access log. Needs root (tmpfs mounts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "ollama-ramdisk"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "distribution.md"
MODEL = "llama3.1:405b"
MIB = 1024**2
# Distribution answers blob GETs with 200; Ollama's pull wants a Location (README).
REGISTRY_CONFIG = """version: 0.1
log: {{level: warn, accesslog: {{disabled: false}}}}
storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: true}}}}
http: {{addr: {address}, secret: bench, headers: {{Location: ["?"]}}}}
"""
_ACCESS = re.compile(r'"GET (?P<path>[^ ]+) [^"]*" (?P<status>\d{3}) (?P<bytes>\d+)')


def ensure_host(step: str) -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure-host.sh"), step],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - http only
                return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"{what} exited with {process.returncode}") from None
            time.sleep(0.05)
    raise SystemExit(f"{what} did not answer")


class Registry:
    def __init__(self, binary: Path, where: Path) -> None:
        where.mkdir(parents=True)
        self.address = f"127.0.0.1:{free_port()}"
        self.log = where / "access.log"
        config = where / "config.yml"
        config.write_text(REGISTRY_CONFIG.format(data=where / "data", address=self.address))
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [str(binary), "serve", str(config)], stdout=output, stderr=output
            )
        wait_for(f"http://{self.address}/v2/", self.process, "the registry")

    def blob_bytes(self) -> tuple[int, int]:
        """(content bytes sent in ranges, bytes sent in Ollama's unread probes)."""
        content = probes = 0
        for match in _ACCESS.finditer(self.log.read_text(errors="replace")):
            if "/blobs/sha256:" not in match["path"]:
                continue
            if match["status"] == "206":
                content += int(match["bytes"])
            elif match["status"] == "200":
                probes += int(match["bytes"])
        return content, probes

    def forget_log(self) -> None:
        self.log.write_text("")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Uplink:
    """A TCP proxy to ``target`` whose downstream bytes, all connections
    together, pass at most ``rate`` per second (a token bucket)."""

    def __init__(self, target: str, rate: int) -> None:
        self.target_host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.rate = rate
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.tokens = 0.0
        self.stamp = time.monotonic()
        self.bucket = asyncio.Lock()
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self.ready.set()
        # Stopped from main() at the end: the serving task ends unfinished.
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(server.serve_forever())

    async def _take(self, nbytes: int) -> None:
        async with self.bucket:
            now = time.monotonic()
            self.tokens = min(self.rate / 10, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= nbytes
            if self.tokens < 0:
                await asyncio.sleep(-self.tokens / self.rate)

    async def _pump(self, reader, writer, throttled: bool) -> None:
        try:
            while chunk := await reader.read(64 * 1024):
                if throttled:
                    await self._take(len(chunk))
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, throttled=False),
            self._pump(up_reader, writer, throttled=True),
        )


class Host:
    """A disk store, its own `ollama serve`, and a RAM disk."""

    def __init__(self, prefix: Path, where: Path) -> None:
        self.where = where
        self.store = where / "disk"
        self.store.mkdir(parents=True)
        self.ram = where / "ram"
        self.ram.mkdir()
        self.prefix = prefix
        self.url = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "OLLAMA_HOST": self.url, "OLLAMA_MODELS": str(self.store),
               "HOME": str(where), "OLLAMA_NOPRUNE": "1"}  # fmt: skip
        self.env = env
        self.log = (where / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [str(prefix / "bin" / "ollama"), "serve"], env=env, stdout=self.log, stderr=self.log
        )
        wait_for(f"http://{self.url}/api/version", self.process, "ollama serve")
        mount = ["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(self.ram)]
        subprocess.run(mount, check=True)

    def ollama(self, *argv: str) -> None:
        subprocess.run(
            [str(self.prefix / "bin" / "ollama"), *argv], env=self.env, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def fill_ram_disk(self) -> None:
        subprocess.run(
            [str(CLI), "populate", "-q", "--source", str(self.store), "--dest",
             str(self.ram / "models"), MODEL],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
        subprocess.run(["umount", str(self.ram)], check=False)
        shutil.rmtree(self.where, ignore_errors=True)


@contextmanager
def hosts(prefix: Path, where: Path, count: int) -> Iterator[list[Host]]:
    made = [Host(prefix, where / f"host-{index}") for index in range(count)]
    try:
        yield made
    finally:
        for host in made:
            host.close()


def at_once(hosts_: list[Host], work: Callable[[Host], None]) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(len(hosts_)) as pool:
        for future in [pool.submit(work, host) for host in hosts_]:
            future.result()
    return time.monotonic() - started


def by_hand(prefix: Path, where: Path, count: int, upstream: Uplink) -> float:
    def work(host: Host) -> None:
        host.ollama("pull", "--insecure", f"{upstream.address}/library/big:latest")
        host.ollama("cp", f"{upstream.address}/library/big:latest", MODEL)
        host.fill_ram_disk()

    with hosts(prefix, where, count) as made:
        return at_once(made, work)


def through_mirror(prefix: Path, where: Path, count: int, mirror: Registry) -> float:
    def work(host: Host) -> None:
        subprocess.run(
            [str(CLI), "pull", "-q", "--source", str(host.store), "--mirror", mirror.address,
             "--insecure", "--ollama", str(prefix / "bin" / "ollama"), MODEL],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        host.fill_ram_disk()

    with hosts(prefix, where, count) as made:
        return at_once(made, work)


def seed(
    prefix: Path, where: Path, models_dir: Path, *, upstream: Registry, mirror: Registry,
    uplink: Uplink,
) -> float:  # fmt: skip
    """The upstream gets the model under a name of its own; then the timed
    seeding: one pull from the internet and a push to the mirror."""
    source = where / "source"
    source.mkdir(parents=True)
    with tarfile.open(next(models_dir.glob("store-large-*.tar"))) as tar:
        tar.extractall(source)  # noqa: S202 - our own archive
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OLLAMA_HOST": address, "OLLAMA_MODELS": str(source),
           "HOME": str(where), "OLLAMA_NOPRUNE": "1"}  # fmt: skip
    feeder = subprocess.Popen([str(prefix / "bin" / "ollama"), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(f"http://{address}/api/version", feeder, "ollama serve")
        for argv in (["cp", MODEL, f"{upstream.address}/library/big:latest"],
                     ["push", "--insecure", f"{upstream.address}/library/big:latest"]):  # fmt: skip
            subprocess.run([str(prefix / "bin" / "ollama"), *argv], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    finally:
        feeder.terminate()
        feeder.wait(timeout=30)
    shutil.rmtree(source)
    with hosts(prefix, where / "seed", 1) as (host,):
        started = time.monotonic()
        host.ollama("pull", "--insecure", f"{uplink.address}/library/big:latest")
        host.ollama("cp", f"{uplink.address}/library/big:latest", MODEL)
        subprocess.run(
            [str(CLI), "push", "-q", "--source", str(host.store), "--mirror", mirror.address,
             "--insecure", "--ollama", str(prefix / "bin" / "ollama"), MODEL],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return time.monotonic() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each row (median)")
    parser.add_argument("--uplink", default="100m", help="the internet link, bytes/s (k, m, g)")
    parser.add_argument("--fleet", default="1,3", help="fleet sizes")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/ollama-ramdisk-bench-dist"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (tmpfs mounts)")
    sys.path.insert(0, str(ROOT / "module_utils"))
    from ollama_ramdisk.sizes import human, parse_size  # noqa: PLC0415

    rate = parse_size(args.uplink)
    sizes = [int(part) for part in args.fleet.split(",")]
    prefix, models_dir = ensure_host("ollama"), ensure_host("models")
    registry_binary = ensure_host("registry")
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(dir=args.workdir))
    upstream = Registry(registry_binary, work / "upstream")
    mirror = Registry(registry_binary, work / "mirror")
    uplink = Uplink(upstream.address, rate)
    rows: list[str] = []
    try:
        upstream.forget_log()
        seeded = seed(prefix, work, models_dir, upstream=upstream, mirror=mirror, uplink=uplink)
        model_bytes, _ = upstream.blob_bytes()
        rows.append(
            f"| seeding the mirror (once per set): one pull from the internet, one push |"
            f" {seeded:.1f} s | {human(model_bytes)} | - |"
        )
        for count in sizes:
            hand_times, mirror_times = [], []
            hand_bytes = mirror_bytes = mirror_probes = 0
            for _ in range(args.repeat):
                upstream.forget_log()
                hand_times.append(by_hand(prefix, work / "hand", count, uplink))
                hand_bytes, _ = upstream.blob_bytes()
                mirror.forget_log()
                mirror_times.append(through_mirror(prefix, work / "mirror-fill", count, mirror))
                mirror_bytes, mirror_probes = mirror.blob_bytes()
            hand, via = statistics.median(hand_times), statistics.median(mirror_times)
            rows.append(
                f"| {count} host(s), `ollama pull` on each by hand | {hand:.1f} s |"
                f" {human(hand_bytes)} | - |"
            )
            rows.append(
                f"| {count} host(s), `ollama-ramdisk pull --mirror` (site.yml's pull) | {via:.1f} s"
                f" ({hand / via:.2f}x) | 0 | {human(mirror_bytes / count)} per host"
                f" (+ {human(mirror_probes / count)} of unread probes) |"
            )
    finally:
        uplink.loop.call_soon_threadsafe(uplink.loop.stop)
        upstream.stop()
        mirror.stop()
        shutil.rmtree(args.workdir, ignore_errors=True)
    table = "\n".join(
        [
            "| to filled RAM disks (the model: 1.09 GB) | time | from the internet |"
            " from the mirror |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    header = (
        f"## Distribution\n\nThe internet: a registry behind a shared {human(rate)}/s link;"
        " the mirror: a registry on loopback. Medians of"
        f" {args.repeat}, {time.strftime('%Y-%m-%d')}.\n\n"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(header + table + "\n")
    args.output.with_suffix(".summary.md").write_text(table + "\n")
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
