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
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from exposition import parse_exposition, series
from real_parts import free_port, unpack_store
from storegen import MountTmpfs, compact_memory, huge_page_bytes, tmpfs_has_huge_pages

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs mounts need root")

HOT = ["llama3.1:8b", "llama3.1:latest", "mistral:7b"]
COLD = ["gemma2:2b"]
MIB = 1024 * 1024


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
    return unpack_store(models_dir, tmp_path / "large", "large")


@pytest.mark.skipif(
    not tmpfs_has_huge_pages(),
    reason="this kernel's tmpfs has no transparent huge pages",
)
def test_on_a_huge_page_ram_disk_the_engine_maps_the_weights_with_2_mib_pages(
    cli, large_store: Path, tmpfs: MountTmpfs, serve
) -> None:
    ram = tmpfs("1200m", options="huge=within_size") / "models"
    compact_memory()
    filled = cli("populate", "-q", "--source", large_store, "--dest", ram, "llama3.1:405b")
    assert filled.code == 0, filled.err
    blob = ram / "blobs" / _weights_blob(ram, "llama3.1:405b")
    size = blob.stat().st_size
    # What tmpfs holds in 2 MiB pages: on a busy machine a few allocations may find
    # no free huge page and fall back to 4 KiB pages, never most of the file.
    in_huge_pages = huge_page_bytes(blob)
    assert in_huge_pages >= size * 0.9, (in_huge_pages, size)
    ollama = serve(ram)

    assert ollama.generate("llama3.1:405b", use_mmap=True)["done"]

    # The engine maps the tensors it computes with (most of the file) with one entry
    # per 2 MiB wherever tmpfs holds a huge page: what it maps with 4 KiB entries is
    # at most the partial 2 MiB pages at each end and what tmpfs holds in small pages.
    resident, mapped = ollama.engine_pmd_mapped(blob)
    assert resident > size // 2
    in_small_pages = size - in_huge_pages
    assert resident - mapped <= in_small_pages + 4 * MIB, (resident, mapped, in_small_pages)


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
    port = free_port()  # nothing listens there

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
