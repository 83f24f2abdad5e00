"""pull and push against the real Ollama and a real registry, on loopback.

The mirror is Docker's distribution registry (`scripts/ensure-host.sh
registry`), seeded by `push` from the test store that `ollama create` made;
every pull is done by the real `ollama serve` the command starts on the
store. What crossed the network is read from the registry's access log.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

import pytest
from real_parts import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the real Ollama runs as root here")

MODELS = ["llama3.1:8b", "llama3.1:latest", "mistral:7b", "gemma2:2b"]
LIBRARY = "manifests/registry.ollama.ai/library"


def _manifest(store: Path, model: str) -> dict:
    name, _, tag = model.partition(":")
    return json.loads((store / LIBRARY / name / tag).read_text())


def _blobs(store: Path, models: list[str]) -> dict[str, int]:
    """hex digest -> size of every blob the models use, each once."""
    found: dict[str, int] = {}
    for model in models:
        manifest = _manifest(store, model)
        for entry in [manifest["config"], *manifest["layers"]]:
            found[entry["digest"].split(":", 1)[1]] = entry["size"]
    return found


def _files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.fixture
def mirror(cli, registry: Registry, disk_store: Path, ollama_prefix: Path) -> Registry:
    """The registry, seeded with every test model by ``push``; its log then emptied."""
    before = _files(disk_store)
    run = cli(
        "push", "--json", "--source", disk_store, "--mirror", registry.address, "--insecure",
        "--ollama", ollama_prefix / "bin" / "ollama", *MODELS,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert len(run.json["pushed"]) == len(MODELS)
    # The push names are gone again: the store is as it was.
    assert _files(disk_store) == before
    registry.log.write_text("")
    return registry


@pytest.fixture
def pull(cli, mirror: Registry, ollama_prefix: Path):
    """``pull(store, *argv)``: the command through the seeded mirror."""

    def run(store: Path, *argv: object):
        return cli(
            "pull", "--json", "--source", store, "--mirror", mirror.address, "--insecure",
            "--ollama", ollama_prefix / "bin" / "ollama", *argv,
        )  # fmt: skip

    return run


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    store = tmp_path / "empty"
    store.mkdir()
    return store


def test_an_empty_store_gets_every_model_from_the_mirror_each_blob_fetched_once(
    pull, mirror: Registry, disk_store: Path, serve, empty_store: Path
) -> None:
    empty = empty_store
    run = pull(empty, *MODELS)
    assert run.code == 0, run.err
    outcome = run.json
    blobs = _blobs(disk_store, MODELS)
    assert outcome["changed"] is True
    assert [model["name"] for model in outcome["pulled"]] == [
        f"registry.ollama.ai/library/{model}" for model in MODELS
    ]
    assert outcome["bytes_fetched"] == sum(blobs.values())
    # Shared blobs (the two llama3.1 tags, the template) crossed once, whole.
    assert mirror.blob_fetches() == blobs
    # Named as asked, with the blobs the seed host has; the mirror's name is gone.
    assert [path.name for path in (empty / "manifests").iterdir()] == ["registry.ollama.ai"]
    assert _blobs(empty, MODELS) == blobs
    for hex_digest, size in blobs.items():
        assert (empty / "blobs" / f"sha256-{hex_digest}").stat().st_size == size
    ollama = serve(empty)
    assert {f"{model}" for model in MODELS} <= ollama.listed()
    assert ollama.generate("mistral:7b")["done"] is True

    # A second run asks nobody anything.
    mirror.log.write_text("")
    again = pull(empty, *MODELS)
    assert again.code == 0, again.err
    assert again.json["changed"] is False
    assert again.json["pulled"] == []
    assert len(again.json["present"]) == len(MODELS)
    assert mirror.requests() == []


def test_a_dry_run_says_what_would_be_fetched_and_fetches_nothing(
    pull, mirror: Registry, disk_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    run = pull(store, "--dry-run", "mistral:7b", "llama3.1:8b")
    assert run.code == 0, run.err
    outcome = run.json
    assert outcome["dry_run"] is True
    assert outcome["changed"] is True
    mistral, llama = outcome["pulled"]
    assert mistral["fetch_bytes"] == sum(_blobs(disk_store, ["mistral:7b"]).values())
    # A blob both models use is counted for the first only.
    both = _blobs(disk_store, ["mistral:7b", "llama3.1:8b"])
    assert mistral["fetch_bytes"] + llama["fetch_bytes"] == sum(both.values())
    assert llama["bytes"] == sum(_blobs(disk_store, ["llama3.1:8b"]).values())
    assert _files(store) == []
    assert mirror.blob_fetches() == {}
    assert all("/manifests/" in entry["path"] for entry in mirror.requests())


def test_a_tag_the_mirror_lacks_fails_the_run_before_any_model_is_fetched(
    pull, mirror: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    run = pull(store, "mistral:7b", "mistral:70b")
    assert run.code == 1
    assert (
        f"model mistral:70b cannot be pulled from {mirror.address} (mirror of"
        " registry.ollama.ai): the registry has no such model or tag (MANIFEST_UNKNOWN"
    ) in run.err
    assert _files(store) == []
    assert mirror.blob_fetches() == {}


def test_a_mirror_that_is_down_fails_the_run_naming_it(
    pull, mirror: Registry, tmp_path: Path
) -> None:
    mirror.stop()
    store = tmp_path / "store"
    store.mkdir()
    run = pull(store, "mistral:7b")
    assert run.code == 1
    assert f"model mistral:7b cannot be pulled from {mirror.address}" in run.err
    assert "the registry cannot be reached" in run.err
    assert "connection refused" in run.err
    assert _files(store) == []


def test_a_pull_that_would_cross_the_reserve_fails_before_anything_is_fetched(
    pull, mirror: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    run = pull(store, "--reserve", "1000t", "mistral:7b")
    assert run.code == 1
    assert f"pulling mistral:7b (4.6 MiB from {mirror.address})" in run.err
    assert "1000.0 TiB must stay free" in run.err
    assert _files(store) == []
    assert mirror.blob_fetches() == {}


def test_a_corrupt_blob_on_the_mirror_fails_the_pull_naming_its_digest_and_leaves_no_model(
    pull, mirror: Registry, disk_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    assert pull(store, "llama3.1:8b").code == 0
    before = _files(store)
    weights = next(
        layer["digest"].split(":", 1)[1]
        for layer in _manifest(disk_store, "mistral:7b")["layers"]
        if layer["mediaType"].endswith(".model")
    )
    data = mirror.blob_data(weights)
    # Same size, other bytes: only the digest can tell.
    data.write_bytes(bytes(byte ^ 0xFF for byte in data.read_bytes()))
    run = pull(store, "mistral:7b")
    assert run.code == 1
    assert f"model mistral:7b cannot be pulled from {mirror.address}" in run.err
    assert weights in run.err
    assert not (store / LIBRARY / "mistral").exists()
    assert not (store / "blobs" / f"sha256-{weights}").exists()
    # What the store served before is all there; the only additions are the
    # model's blobs that did check (kept for the next try, as Ollama keeps them).
    after = _files(store)
    assert set(before) <= set(after)
    added = set(after) - set(before)
    assert {path.split("/")[0] for path in added} <= {"blobs"}
    assert {path.split("sha256-")[1] for path in added} < set(_blobs(disk_store, ["mistral:7b"]))


def test_a_root_run_pulls_with_the_store_owners_rights_and_everything_is_theirs(
    pull, mirror: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(store, nobody.pw_uid, nobody.pw_gid)
    run = pull(store, "mistral:7b")
    assert run.code == 0, run.err
    owners = {(path.stat().st_uid, path.stat().st_gid) for path in store.rglob("*")}
    assert owners == {(nobody.pw_uid, nobody.pw_gid)}


def test_a_model_with_a_blob_missing_gets_only_that_blob(
    pull, mirror: Registry, disk_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(disk_store, store, symlinks=True)
    weights = next(
        layer for layer in _manifest(disk_store, "mistral:7b")["layers"]
        if layer["mediaType"].endswith(".model")
    )  # fmt: skip
    hex_digest = weights["digest"].split(":", 1)[1]
    (store / "blobs" / f"sha256-{hex_digest}").unlink()
    run = pull(store, "mistral:7b", "llama3.1:8b")
    assert run.code == 0, run.err
    assert [model["name"] for model in run.json["pulled"]] == [
        "registry.ollama.ai/library/mistral:7b"
    ]
    assert run.json["present"] == ["registry.ollama.ai/library/llama3.1:8b"]
    assert run.json["bytes_fetched"] == weights["size"]
    assert mirror.blob_fetches() == {hex_digest: weights["size"]}
