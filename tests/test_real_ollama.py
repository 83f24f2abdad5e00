"""The core against the real Ollama: a RAM disk it fills is one Ollama serves.

The server and engine are the ones `scripts/ensure-host.sh ollama` builds
from source; the models are the real `ollama create` imports of
`scripts/ensure-host.sh models`. Each test runs `ollama serve` on a loopback
port with its store on a real tmpfs that `populate` filled, as ExecStartPre
does, and asks the server itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from exposition import parse_exposition, series
from storegen import MountTmpfs, tmpfs_has_huge_pages

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs mounts need root")

ROOT = Path(__file__).resolve().parents[1]
HOT = ["llama3.1:8b", "llama3.1:latest", "mistral:7b"]
COLD = ["gemma2:2b"]


def _last_line(step: str) -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure-host.sh"), step],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"ensure-host.sh {step} failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def ollama_prefix() -> Path:
    return _last_line("ollama")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _last_line("models")


def _unpack(models_dir: Path, where: Path, kind: str) -> Path:
    """A test store archive (``store-KIND-*.tar``) unpacked as `ollama create` left it."""
    archive = next(models_dir.glob(f"store-{kind}-*.tar"))
    store = where / "models"
    store.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(store)  # noqa: S202 - our own archive
    return store


@pytest.fixture
def disk_store(models_dir: Path, tmp_path: Path) -> Path:
    """The small test store."""
    return _unpack(models_dir, tmp_path / "disk", "small")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Ollama:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    prefix: Path

    def run(self, *argv: str) -> None:
        """The real `ollama` CLI against this server (create, cp, ...)."""
        done = subprocess.run(
            [str(self.prefix / "bin" / "ollama"), *argv],
            env={**os.environ, "OLLAMA_HOST": self.url},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"ollama {' '.join(argv)}: {done.stderr}"

    def create_tinyllama(self, gguf: Path, where: Path) -> None:
        modelfile = where / "Modelfile"
        modelfile.write_text(f"FROM {gguf}\nPARAMETER num_predict 8\n")
        self.run("create", "tinyllama:chat", "-f", str(modelfile))

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.url}{path}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"http://{self.url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return json.loads(response.read())

    def listed(self) -> set[str]:
        return {model["name"] for model in self.get("/api/tags")["models"]}

    def generate(self, model: str, **options: object) -> dict:
        body = {"model": model, "prompt": "Hello", "stream": False}
        body["options"] = {"num_predict": 1, **options}
        return self.post("/api/generate", body)

    def engine_pmd_mapped(self, blob: Path) -> tuple[int, int]:
        """(bytes resident, bytes mapped with 2 MiB pages) of the file ``blob`` in the
        engines loading it (smaps Rss, ShmemPmdMapped)."""
        found = subprocess.run(["pgrep", "-f", "--", f"--model {blob}"],
                               capture_output=True, text=True, check=False)  # fmt: skip
        rss = pmd = 0
        for pid in found.stdout.split():
            mapping = None
            for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                fields = line.split()
                if fields and "-" in fields[0] and len(fields) >= 5:
                    mapping = fields[5] if len(fields) > 5 else ""
                elif mapping == str(blob) and fields[0] == "Rss:":
                    rss += int(fields[1]) * 1024
                elif mapping == str(blob) and fields[0] == "ShmemPmdMapped:":
                    pmd += int(fields[1]) * 1024
        return rss, pmd

    def engine_maps(self, blob: str) -> set[str]:
        """Files the engine serving ``blob`` maps that hold it (resolved paths)."""
        found = subprocess.run(
            ["pgrep", "-f", "--", f"--model .*{blob}"],
            capture_output=True,
            text=True,
            check=False,
        )
        paths: set[str] = set()
        for pid in found.stdout.split():
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                fields = line.split(None, 5)
                if len(fields) == 6 and blob in fields[5]:
                    paths.add(fields[5])
        return paths


@pytest.fixture
def serve(ollama_prefix: Path, tmp_path: Path) -> Iterator:
    started: list[Ollama] = []

    def start(store: Path) -> Ollama:
        url = f"127.0.0.1:{_free_port()}"
        log = tmp_path / f"serve-{len(started)}.log"
        env = {**os.environ, "OLLAMA_HOST": url, "OLLAMA_MODELS": str(store), "HOME": str(tmp_path)}
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(ollama_prefix / "bin" / "ollama"), "serve"],
                env=env,
                stdout=output,
                stderr=output,
            )
        server = Ollama(url, process, log, ollama_prefix)
        started.append(server)
        for _ in range(200):
            try:
                server.get("/api/version")
                return server
            except OSError:
                assert process.poll() is None, log.read_text()[-3000:]
                time.sleep(0.05)
        pytest.fail(f"ollama serve did not answer: {log.read_text()[-3000:]}")

    yield start
    for server in started:
        server.process.terminate()
        server.process.wait(timeout=30)


def _populate(cli, disk_store: Path, dest: Path) -> None:
    run = cli("populate", "-q", "--source", disk_store, "--dest", dest, "--cold", *COLD, *HOT)
    assert run.code == 0, run.err


def _weights_blob(store: Path, model: str) -> str:
    name, _, tag = model.partition(":")
    manifest = json.loads((store / "manifests/registry.ollama.ai/library" / name / tag).read_text())
    (layer,) = [x for x in manifest["layers"] if x["mediaType"].endswith(".model")]
    return str(layer["digest"]).replace(":", "-")


def test_ollama_lists_and_answers_every_test_model_from_a_populated_ram_disk(
    cli, disk_store: Path, models_dir: Path, tmpfs: MountTmpfs, serve
) -> None:
    every = sorted(json.loads(next(models_dir.glob("store-small-*.json")).read_text()))
    ram = tmpfs("64m") / "models"
    run = cli("populate", "-q", "--source", disk_store, "--dest", ram, *every)
    assert run.code == 0, run.err

    ollama = serve(ram)

    assert ollama.listed() == set(every)
    for model in every:
        assert ollama.generate(model)["done"], model


@pytest.fixture
def large_store(models_dir: Path, tmp_path: Path) -> Path:
    """The large test store: one model of 1.09 GB (llama3.1:405b)."""
    return _unpack(models_dir, tmp_path / "large", "large")


@pytest.mark.skipif(
    not tmpfs_has_huge_pages(),
    reason="this kernel's tmpfs has no transparent huge pages",
)
def test_on_a_huge_page_ram_disk_the_engine_maps_the_weights_with_2_mib_pages(
    cli, large_store: Path, tmpfs: MountTmpfs, serve
) -> None:
    ram = tmpfs("1200m", options="huge=within_size") / "models"
    filled = cli("populate", "-q", "--source", large_store, "--dest", ram, "llama3.1:405b")
    assert filled.code == 0, filled.err
    blob = ram / "blobs" / _weights_blob(ram, "llama3.1:405b")
    ollama = serve(ram)

    assert ollama.generate("llama3.1:405b", use_mmap=True)["done"]

    # The engine maps the tensors it computes with (most of the file): all of it
    # but the partial 2 MiB pages at each end is mapped with one entry per 2 MiB.
    resident, mapped = ollama.engine_pmd_mapped(blob)
    assert resident > blob.stat().st_size // 2
    assert mapped >= resident - 4 * 1024 * 1024, (resident, mapped)


def test_the_engine_maps_hot_weights_from_the_tmpfs_and_cold_ones_from_disk(
    cli, disk_store: Path, tmpfs: MountTmpfs, serve
) -> None:
    ram = tmpfs("64m") / "models"
    _populate(cli, disk_store, ram)
    ollama = serve(ram)

    hot_blob = _weights_blob(ram, "mistral:7b")
    cold_blob = _weights_blob(ram, "gemma2:2b")
    assert ollama.generate("mistral:7b", use_mmap=True)["done"]
    assert ollama.generate("gemma2:2b", use_mmap=True)["done"]

    assert ollama.engine_maps(hot_blob) == {f"{ram}/blobs/{hot_blob}"}
    assert ollama.engine_maps(cold_blob) == {f"{disk_store}/blobs/{cold_blob}"}


def _listing(root: Path) -> dict[str, tuple]:
    return {
        str(path.relative_to(root)): (
            path.lstat().st_ino,
            os.readlink(path) if path.is_symlink() else path.lstat().st_size,
        )
        for path in root.rglob("*")
    }


def test_ollamas_start_up_prune_keeps_every_file_and_link_of_the_ram_disk(
    cli, disk_store: Path, tmpfs: MountTmpfs, serve
) -> None:
    ram = tmpfs("64m") / "models"
    _populate(cli, disk_store, ram)
    # Ollama prunes only files older than an hour: age them so the prune is real.
    hours_ago = time.time() - 3 * 3600
    for path in [ram, *ram.rglob("*")]:
        os.utime(path, (hours_ago, hours_ago), follow_symlinks=False)
    before = _listing(ram)

    ollama = serve(ram)

    assert ollama.listed() == set(HOT + COLD)
    log = ollama.log.read_text()
    assert "corrupt manifests detected" not in log
    assert f"total blobs: {len(list((ram / 'blobs').iterdir()))}" in log
    assert "total unused blobs removed: 0" in log
    assert _listing(ram) == before


def test_a_model_made_in_ram_with_ollama_create_is_kept_and_reported_ram_only(
    cli, disk_store: Path, models_dir: Path, tmpfs: MountTmpfs, serve
) -> None:
    ram = tmpfs("64m") / "models"
    _populate(cli, disk_store, ram)
    ollama = serve(ram)
    ollama.create_tinyllama(models_dir / "tinyllama.gguf", ram.parent)

    run = cli(
        "populate", "--json", "--prune", "--source", disk_store, "--dest", ram,
        "--cold", *COLD, *HOT,
    )  # fmt: skip

    assert run.code == 0, run.err
    assert run.json["ram_only"] == ["registry.ollama.ai/library/tinyllama:chat"]
    assert "tinyllama:chat" in ollama.listed()
    assert ollama.generate("tinyllama:chat")["done"]


def test_a_model_made_in_ram_is_written_back_and_answers_from_the_disk_store(
    cli, disk_store: Path, models_dir: Path, tmpfs: MountTmpfs, serve
) -> None:
    ram = tmpfs("64m") / "models"
    _populate(cli, disk_store, ram)
    in_ram = serve(ram)
    in_ram.create_tinyllama(models_dir / "tinyllama.gguf", ram.parent)
    in_ram.run("cp", "mistral:7b", "mistral:mine")

    run = cli("writeback", "--json", "--verify", "--reserve", "0", "--source", disk_store,
              "--dest", ram)  # fmt: skip

    assert run.code == 0, run.err
    assert sorted(run.json["written"]) == [
        "registry.ollama.ai/library/mistral:mine",
        "registry.ollama.ai/library/tinyllama:chat",
    ]
    on_disk = serve(disk_store)
    assert {"tinyllama:chat", "mistral:mine"} <= on_disk.listed()
    assert on_disk.generate("tinyllama:chat")["done"]


def test_preload_loads_each_model_with_its_keep_alive_and_names_a_missing_one(
    cli, disk_store: Path, serve
) -> None:
    ollama = serve(disk_store)

    run = cli(
        "preload", "--json", "--host", ollama.url, "--keep-alive", "-1", "--retries", "2",
        "llama3.1:8b", "nosuch:model", "mistral:7b",
    )  # fmt: skip

    assert run.code == 1
    assert run.json["loaded"] == ["llama3.1:8b", "mistral:7b"]
    assert "not found" in run.json["failed"]["nosuch:model"]
    assert "could not preload nosuch:model after 1 attempt(s)" in run.err
    assert "preloaded llama3.1:8b in" in run.err
    loaded = {model["name"]: model for model in ollama.get("/api/ps")["models"]}
    assert set(loaded) == {"llama3.1:8b", "mistral:7b"}
    # -1 keeps them until evicted: Ollama reports an expiry centuries ahead.
    assert all(int(model["expires_at"][:4]) > 2100 for model in loaded.values())


def test_preload_with_a_duration_sets_that_expiry(cli, disk_store: Path, serve) -> None:
    ollama = serve(disk_store)

    run = cli("preload", "--json", "--host", ollama.url, "--keep-alive", "7m", "qwen2.5:7b")

    assert run.code == 0, run.err
    (model,) = ollama.get("/api/ps")["models"]
    assert model["name"] == "qwen2.5:7b"
    # An RFC 3339 time with nanoseconds and an offset: seconds are enough here.
    stamp, offset = model["expires_at"][:19], model["expires_at"][-6:].replace("Z", "+00:00")
    expires = datetime.fromisoformat(stamp + (offset if offset[0] in "+-" else "+00:00"))
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    assert 7 * 60 - 60 < left <= 7 * 60


def test_preload_waits_for_the_api_only_so_long(cli) -> None:
    port = _free_port()  # nothing listens there

    started = time.monotonic()
    run = cli("preload", "--host", f"127.0.0.1:{port}", "--wait", "2", "llama3.1:8b")

    assert run.code == 1
    assert f"Ollama did not answer on http://127.0.0.1:{port} within 2 s" in run.err
    assert time.monotonic() - started < 6


def test_preload_skip_loaded_changes_nothing_the_second_time(cli, disk_store: Path, serve) -> None:
    ollama = serve(disk_store)
    args = ["preload", "--json", "--host", ollama.url, "--skip-loaded"]

    dry = cli(*args, "--dry-run", "qwen2.5:7b")
    nothing_loaded = ollama.get("/api/ps")["models"]
    first = cli(*args, "qwen2.5:7b")
    second = cli(*args, "qwen2.5:7b")

    assert dry.code == 0, dry.err
    assert dry.json["loaded"] == ["qwen2.5:7b"]
    assert dry.json["dry_run"] is True
    assert nothing_loaded == []
    assert first.json["changed"] is True
    assert [model["name"] for model in ollama.get("/api/ps")["models"]] == ["qwen2.5:7b"]
    assert second.code == 0, second.err
    assert second.json["changed"] is False
    assert second.json["loaded"] == []
    assert second.json["already_loaded"] == ["qwen2.5:7b"]


def test_metrics_show_what_the_real_server_has_loaded_and_when_it_is_down(
    cli, disk_store: Path, serve, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    ram = tmpfs("64m") / "models"
    _populate(cli, disk_store, ram)
    ollama = serve(ram)
    ollama.post("/api/generate", {"model": "mistral:7b", "keep_alive": -1})
    ollama.post("/api/generate", {"model": "llama3.1:8b", "keep_alive": "5m"})
    listed = {model["name"]: model for model in ollama.get("/api/ps")["models"]}
    textfile = tmp_path / "ollama_ramdisk.prom"
    args = ["status", "--store", ram, "--ollama-host", ollama.url, "--prometheus", textfile]

    up = cli(*args, "--json")
    samples = parse_exposition(textfile.read_text())
    ollama.process.terminate()
    ollama.process.wait(timeout=30)
    down = cli(*args)
    after = parse_exposition(textfile.read_text())

    assert up.code == 0, up.err
    assert set(listed) == {"mistral:7b", "llama3.1:8b"}
    assert series(samples, "ollama_ramdisk_ollama_up") == 1
    assert series(samples, "ollama_ramdisk_ollama_loaded_models") == 2
    for short, entry in listed.items():
        model = f"registry.ollama.ai/library/{short}"
        size = series(samples, "ollama_ramdisk_ollama_model_size_bytes", model=model)
        vram = series(samples, "ollama_ramdisk_ollama_model_vram_bytes", model=model)
        assert (size, vram) == (entry["size"], entry["size_vram"])
    forever = "registry.ollama.ai/library/mistral:7b"
    assert series(samples, "ollama_ramdisk_ollama_model_expiry_seconds", model=forever) == float(
        "inf"
    )
    five = "registry.ollama.ai/library/llama3.1:8b"
    assert 240 < series(samples, "ollama_ramdisk_ollama_model_expiry_seconds", model=five) <= 300
    loaded = {entry["name"]: entry for entry in up.json["ollama"]["loaded"]}
    assert loaded[forever]["never_expires"] is True
    assert loaded[forever]["expires_in"] is None
    assert down.code == 0, down.err
    assert series(after, "ollama_ramdisk_ollama_up") == 0
    assert not [key for key in after if key[0].startswith("ollama_ramdisk_ollama_model")]
    # The store's own series do not depend on the server.
    assert series(after, "ollama_ramdisk_models") == len(HOT) + len(COLD)
    assert f"ollama http://{ollama.url}: not answering" in down.out
