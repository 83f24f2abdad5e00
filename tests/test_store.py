"""A store on disk: manifests validated before any blob path is built from them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from ollama_ramdisk.errors import InvalidOption, MalformedManifest, ModelNotFound
from ollama_ramdisk.names import parse_name
from ollama_ramdisk.store import MAX_MANIFEST_BYTES, Store, blob_digest_from_filename
from storegen import CONFIG, MODEL, StoreFactory, SyntheticStore, text

HEX = "ab" * 32


def _document(config: Any = None, layers: Any = None) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "config": config or {"mediaType": CONFIG, "digest": f"sha256:{'cd' * 32}", "size": 2},
        "layers": layers if layers is not None else [],
    }


def _layer(digest: Any = f"sha256:{HEX}", size: Any = 3, **extra: Any) -> dict[str, Any]:
    return {"mediaType": MODEL, "digest": digest, "size": size, **extra}


def test_manifest_lists_config_then_layers_with_shared_blobs_once(fleet: SyntheticStore) -> None:
    spec = fleet.models["llama3.2:3b"]

    manifest = fleet.store.read_manifest(parse_name("llama3.2:3b"))

    assert [blob.digest for blob in manifest.blobs] == [layer.digest for layer in spec.blobs]
    assert [blob.size for blob in manifest.blobs] == [layer.size for layer in spec.blobs]
    assert manifest.blobs[0].media_type == CONFIG
    assert manifest.raw == spec.manifest_bytes()
    assert manifest.path == fleet.manifest_path("llama3.2:3b")
    assert manifest.blob_bytes == sum(layer.size for layer in spec.blobs)


def test_a_blob_listed_twice_counts_once(store_factory: StoreFactory) -> None:
    weights = text(b"weights")
    built = store_factory({"twice:1": [weights, weights]})

    manifest = built.store.read_manifest(parse_name("twice:1"))

    assert [blob.digest for blob in manifest.blobs] == [
        built.models["twice:1"].config.digest,
        weights.digest,
    ]


def test_digest_with_dash_and_upper_case_names_the_file_as_ollama_does(
    store_factory: StoreFactory,
) -> None:
    # Ollama accepts sha256[:-]<hex> in either case and keeps the case in the file name.
    built = store_factory({})
    blob, config = text(b"abc"), text(b"{}", CONFIG)
    (built.root / "blobs" / f"sha256-{blob.hex.upper()}").write_bytes(b"abc")
    (built.root / "blobs" / config.filename).write_bytes(b"{}")
    layer = _layer(f"sha256-{blob.hex.upper()}", 3)
    built.write_manifest("m:t", _document(config.descriptor(), [layer]))

    manifest = built.store.read_manifest(parse_name("m:t"))
    built.store.check_blobs(manifest)

    assert manifest.blobs[1].digest == f"sha256:{blob.hex.upper()}"
    assert built.store.blob_path(manifest.blobs[1]).name == f"sha256-{blob.hex.upper()}"


MALFORMED: dict[str, tuple[bytes | dict[str, Any], str]] = {
    "bad JSON": (b'{"config": ', "not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not valid JSON"),
    "not an object": (b"[1, 2]", "must be a JSON object"),
    "no config": ({"layers": []}, "lacks config"),
    "no layers": ({"config": _layer()}, "lacks layers"),
    "layers not a list": (_document(layers={"a": 1}), "layers is not a list"),
    "layer not an object": (_document(layers=["sha256:" + HEX]), "layers[0] is not an object"),
    "layer without digest": (
        _document(layers=[{"mediaType": MODEL, "size": 1}]),
        "layers[0] lacks digest",
    ),
    "path in digest": (_document(layers=[_layer("sha256:../../x")]), "'sha256:../../x'"),
    "sha512 digest": (_document(layers=[_layer("sha512:" + "ab" * 64)]), "is not sha256:"),
    "short digest": (_document(layers=[_layer("sha256:abc")]), "is not sha256:"),
    "digest with newline": (_document(layers=[_layer(f"sha256:{HEX}\n")]), "is not sha256:"),
    "digest not a string": (_document(layers=[_layer(12)]), "digest is not a string"),
    "negative size": (_document(layers=[_layer(size=-1)]), "size -1 is not a byte count"),
    "size as text": (_document(layers=[_layer(size="3")]), "size '3' is not a byte count"),
    "size as bool": (_document(layers=[_layer(size=True)]), "size True is not a byte count"),
    "two sizes for one blob": (
        _document(layers=[_layer(size=3), _layer(size=4)]),
        "listed with sizes 3 and 4",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_refused_naming_the_file(
    store_factory: StoreFactory, case: str
) -> None:
    content, reason = MALFORMED[case]
    built = store_factory({})
    path = built.write_manifest("broken:1", content)

    with pytest.raises(MalformedManifest) as caught:
        built.store.read_manifest(parse_name("broken:1"))

    assert str(caught.value).startswith(f"{path}: ")
    assert reason in str(caught.value)
    assert caught.value.exit_code == 2


def test_blob_whose_size_disagrees_with_the_manifest_names_both_files(
    fleet: SyntheticStore,
) -> None:
    weights = fleet.models["qwen2.5-coder:7b"].layers[0]
    with open(fleet.blob_path(weights), "ab") as handle:
        handle.write(b"x")
    manifest = fleet.store.read_manifest(parse_name("qwen2.5-coder:7b"))

    with pytest.raises(MalformedManifest) as caught:
        fleet.store.check_blobs(manifest)

    message = str(caught.value)
    assert message.startswith(f"{fleet.blob_path(weights)}: {weights.size + 1} bytes")
    assert str(fleet.manifest_path("qwen2.5-coder:7b")) in message
    assert f"says {weights.size}" in message


def test_missing_blob_is_named_with_its_model(fleet: SyntheticStore) -> None:
    weights = fleet.models["acme/embedder:v1"].layers[0]
    fleet.blob_path(weights).unlink()
    manifest = fleet.store.read_manifest(parse_name("acme/embedder:v1"))

    with pytest.raises(
        MalformedManifest, match=re.escape("blob of registry.ollama.ai/acme/embedder:v1")
    ):
        fleet.store.check_blobs(manifest)


def test_symlinked_blobs_in_the_source_are_followed(fleet: SyntheticStore, tmp_path: Path) -> None:
    weights = fleet.models["llama3.2:1b"].layers[0]
    elsewhere = tmp_path / "elsewhere"
    fleet.blob_path(weights).rename(elsewhere)
    fleet.blob_path(weights).symlink_to(elsewhere)

    fleet.store.check_blobs(fleet.store.read_manifest(parse_name("llama3.2:1b")))


def test_unknown_model_names_the_store_and_the_manifest_path(fleet: SyntheticStore) -> None:
    with pytest.raises(ModelNotFound) as caught:
        fleet.store.read_manifest(parse_name("mistral:7b"))

    assert str(caught.value) == (
        f"model mistral:7b is not in the store {fleet.root} "
        "(no manifests/registry.ollama.ai/library/mistral/7b)"
    )
    assert caught.value.exit_code == 2


def test_a_case_only_mismatch_names_the_spelling_the_store_has(fleet: SyntheticStore) -> None:
    with pytest.raises(
        ModelNotFound, match=re.escape("the store has llama3.2:3b, which differs only in case")
    ):
        fleet.store.read_manifest(parse_name("Llama3.2:3B"))


def test_a_directory_where_the_manifest_should_be_is_malformed(store_factory: StoreFactory) -> None:
    built = store_factory({})
    path = built.manifest_path("dir:1")
    path.mkdir(parents=True)

    with pytest.raises(MalformedManifest, match=f"^{path}: is a directory"):
        built.store.read_manifest(parse_name("dir:1"))


def test_a_huge_manifest_is_not_read_whole(store_factory: StoreFactory) -> None:
    built = store_factory({})
    path = built.write_manifest("huge:1", b"")
    with open(path, "wb") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)

    with pytest.raises(MalformedManifest, match=f"^{path}: too large"):
        built.store.read_manifest(parse_name("huge:1"))


def test_iter_models_lists_only_manifests_whose_path_is_a_valid_name(
    fleet: SyntheticStore,
) -> None:
    library = fleet.root / "manifests" / "registry.ollama.ai" / "library"
    (library / "llama3.2" / "3b~").write_text("editor backup")
    (library / ".hidden").mkdir()
    (library / ".hidden" / "latest").write_text("{}")
    (library / "llama3.2" / "dir-tag").mkdir()
    (library / "llama3.2" / "linked").symlink_to(library / "llama3.2" / "3b")

    names = [name.qualified for name in fleet.store.iter_models()]

    assert sorted(names) == sorted(spec.qualified for spec in fleet.models.values())


def test_a_store_without_manifests_lists_nothing(tmp_path: Path) -> None:
    assert list(Store(tmp_path / "absent").iter_models()) == []
    assert list(Store(tmp_path).iter_blob_files()) == []


def test_iter_blob_files_skips_anything_not_named_by_a_digest(fleet: SyntheticStore) -> None:
    blobs = fleet.root / "blobs"
    for leftover in (f"sha256-{HEX}-partial", f"sha256-{HEX}.tmp", "sha256-abc", ".tmp-copy"):
        (blobs / leftover).write_text("leftover")
    (blobs / f"sha256-{'ef' * 32}").symlink_to("/nonexistent")

    names = {path.name for path in fleet.store.iter_blob_files()}

    expected = {layer.filename for layer in fleet.distinct_blobs().values()}
    assert names == expected | {f"sha256-{'ef' * 32}"}


def test_blob_filename_maps_to_its_digest_and_nothing_else_does() -> None:
    assert blob_digest_from_filename(f"sha256-{HEX}") == f"sha256:{HEX}"
    assert blob_digest_from_filename(f"sha256-{HEX}\n") is None
    assert blob_digest_from_filename(f"sha256:{HEX}") is None
    assert blob_digest_from_filename("sha256-../../etc") is None


def test_require_directory_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    Store(tmp_path).require_directory("--source")

    for missing in (tmp_path / "absent", tmp_path / "file"):
        with pytest.raises(InvalidOption, match=f"^--source: {missing} is not a directory"):
            Store(missing).require_directory("--source")


def test_store_json_is_what_ollama_writes(fleet: SyntheticStore) -> None:
    # Sanity of the fixture itself: compact JSON with schemaVersion 2 and real digests.
    raw = fleet.manifest_path("llama3.2:3b").read_bytes()
    document = json.loads(raw)

    assert document["schemaVersion"] == 2
    assert b" " not in raw
    for layer in fleet.models["llama3.2:3b"].blobs:
        assert os.path.getsize(fleet.blob_path(layer)) == layer.size
