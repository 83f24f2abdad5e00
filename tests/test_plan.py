"""The sizing plan: each blob counted once, page-rounded, sized at the headroom."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ollama_ramdisk.errors import InputProblems, InvalidInput, InvalidOption, MalformedManifest
from ollama_ramdisk.plan import build_plan, check_headroom, resolve_model_set, size_for
from ollama_ramdisk.sizes import GIB, MIB, PAGE_SIZE, round_up
from storegen import Layer, StoreFactory, SyntheticStore, make_store, sparse, text

TWO_TAGS = ["llama3.2:3b", "llama3.2:latest"]


def _plan(store: SyntheticStore, hot: list[str], cold: tuple[str, ...] = (), **kwargs: object):
    model_set = resolve_model_set(store.store, hot, cold)
    return build_plan(model_set, **{"mem_total": 64 * GIB, "gpus": False, **kwargs})  # type: ignore[arg-type]


def test_two_tags_sharing_every_blob_count_their_blobs_once(fleet: SyntheticStore) -> None:
    one = _plan(fleet, ["llama3.2:3b"])
    both = _plan(fleet, TWO_TAGS)

    assert both.blob_count == one.blob_count == len(fleet.models["llama3.2:3b"].blobs)
    # Only the second manifest adds bytes (and one page).
    manifest = len(fleet.models["llama3.2:latest"].manifest_bytes())
    assert both.bytes == one.bytes + manifest
    assert both.tmpfs_bytes == one.tmpfs_bytes + PAGE_SIZE


def test_bytes_are_distinct_blobs_plus_manifests_and_tmpfs_rounds_each_file(
    fleet: SyntheticStore,
) -> None:
    hot = [*TWO_TAGS, "llama3.2:1b", "qwen2.5-coder:7b"]

    plan = _plan(fleet, hot)

    blobs = fleet.distinct_blobs(*hot).values()
    manifests = [len(fleet.models[name].manifest_bytes()) for name in hot]
    assert plan.bytes == fleet.bytes_of(*hot)
    assert plan.tmpfs_bytes == sum(round_up(layer.size, PAGE_SIZE) for layer in blobs) + sum(
        round_up(size, PAGE_SIZE) for size in manifests
    )
    assert plan.size_bytes == math.ceil(plan.tmpfs_bytes * 1.2 / MIB) * MIB


def test_cold_models_are_checked_but_not_counted(fleet: SyntheticStore) -> None:
    hot_only = _plan(fleet, ["llama3.2:1b"])
    with_cold = _plan(fleet, ["llama3.2:1b"], cold=("qwen2.5-coder:7b", "acme/embedder:v1"))

    assert with_cold.to_dict() | {"cold_models": []} == hot_only.to_dict()
    assert with_cold.to_dict()["cold_models"] == [
        "registry.ollama.ai/library/qwen2.5-coder:7b",
        "registry.ollama.ai/acme/embedder:v1",
    ]
    # A cold model's blobs that a hot model also needs are copied, the rest linked.
    cold_only = with_cold.model_set.cold_only_blobs()
    assert {blob.digest for blob in cold_only.values()} == {
        layer.digest
        for layer in fleet.distinct_blobs("qwen2.5-coder:7b", "acme/embedder:v1").values()
    } - {layer.digest for layer in fleet.distinct_blobs("llama3.2:1b").values()}


def test_a_model_both_hot_and_cold_is_refused(fleet: SyntheticStore) -> None:
    with pytest.raises(InvalidInput, match=r"llama3\.2:1b is listed as both hot and cold"):
        resolve_model_set(fleet.store, ["llama3.2:1b"], ["llama3.2:1b"])


def test_a_model_named_twice_is_planned_once(fleet: SyntheticStore) -> None:
    plan = _plan(fleet, ["llama3.2:1b", "llama3.2:1b", "registry.ollama.ai/library/llama3.2:1b"])

    assert [model["name"] for model in plan.to_dict()["models"]] == [
        "registry.ollama.ai/library/llama3.2:1b"
    ]
    assert plan.bytes == fleet.bytes_of("llama3.2:1b")


def test_json_keys_of_the_contract(fleet: SyntheticStore) -> None:
    document = _plan(fleet, ["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"]).to_dict()

    assert {
        "models", "blob_count", "bytes", "tmpfs_bytes", "headroom", "size_bytes", "size",
        "mem_total", "reserve", "fits",
    } <= set(document)  # fmt: skip
    (model,) = document["models"]
    spec = fleet.models["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"]
    assert model == {
        "name": "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "manifest": "manifests/hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF/Q4_K_M",
        "blobs": [layer.digest for layer in spec.blobs],
        "bytes": sum(layer.size for layer in spec.blobs) + len(spec.manifest_bytes()),
    }
    assert document["size"] == "1m"


def test_every_missing_or_malformed_model_is_reported_together(fleet: SyntheticStore) -> None:
    broken = fleet.write_manifest("broken:1", b"{not json")
    fleet.blob_path(fleet.models["acme/embedder:v1"].layers[0]).unlink()

    with pytest.raises(InputProblems) as caught:
        resolve_model_set(
            fleet.store,
            ["llama3.2:3b", "mistral:7b", "broken:1", "../x"],
            cold=["acme/embedder:v1", "Qwen2.5-coder:7B"],
        )

    messages = [str(problem) for problem in caught.value.problems]
    assert len(messages) == 5
    assert messages[0].startswith("invalid model name '../x'")
    assert "model mistral:7b is not in the store" in messages[1]
    assert messages[2].startswith(f"{broken}: not valid JSON")
    assert "blob of registry.ollama.ai/acme/embedder:v1 is missing" in messages[3]
    assert "the store has qwen2.5-coder:7b, which differs only in case" in messages[4]
    assert caught.value.exit_code == 2


def test_a_single_problem_is_raised_as_itself(fleet: SyntheticStore) -> None:
    fleet.write_manifest("broken:1", {"config": {}, "layers": []})

    with pytest.raises(MalformedManifest, match="config lacks mediaType, digest, size"):
        resolve_model_set(fleet.store, ["broken:1"])


def test_blobs_are_not_checked_when_asked_not_to(fleet: SyntheticStore) -> None:
    fleet.blob_path(fleet.models["acme/embedder:v1"].layers[0]).unlink()

    model_set = resolve_model_set(fleet.store, ["acme/embedder:v1"], check_blobs=False)

    assert [manifest.name.model for manifest in model_set.hot] == ["embedder"]


def test_fits_exactly_at_memory_minus_reserve_minus_a_load(store_factory: StoreFactory) -> None:
    # Without GPUs a load copies the weights (5000 bytes here) beside the RAM disk.
    built = store_factory({"m:1": [text(b"w" * 5000)]})
    plan = _plan(built, ["m:1"], mem_total=10 * MIB, reserve=9 * MIB - 5000)
    assert plan.size_bytes == MIB
    assert plan.load.copy_bytes == 5000
    assert plan.fits

    tight = _plan(built, ["m:1"], mem_total=10 * MIB, reserve=9 * MIB - 5000 + 1)

    assert not tight.fits
    assert tight.to_dict()["fits"] is False


def test_default_reserve_is_the_larger_of_4g_and_a_tenth(fleet: SyntheticStore) -> None:
    assert _plan(fleet, ["llama3.2:1b"], mem_total=16 * GIB).reserve == 4 * GIB
    assert _plan(fleet, ["llama3.2:1b"], mem_total=512 * GIB).reserve == 512 * GIB // 10


def test_a_huge_set_does_not_fit(store_factory: StoreFactory) -> None:
    built = store_factory({"big:405b": [sparse(300 * GIB, "big")]})

    plan = _plan(built, ["big:405b"], mem_total=256 * GIB)

    assert plan.bytes > 300 * GIB
    assert plan.size_bytes >= 360 * GIB
    assert not plan.fits


def test_a_forced_size_overrides_the_plan_and_says_when_it_is_too_small(
    fleet: SyntheticStore,
) -> None:
    plan = _plan(fleet, TWO_TAGS, size_override=100 * 1024)

    assert plan.size_bytes == MIB
    assert plan.size_override is True
    assert plan.holds_set is True
    assert _plan(fleet, TWO_TAGS, size_override=8 * GIB).size == "8g"


def test_a_forced_size_of_zero_is_refused_because_tmpfs_would_be_unlimited(
    fleet: SyntheticStore,
) -> None:
    with pytest.raises(InvalidOption, match="unlimited"):
        _plan(fleet, TWO_TAGS, size_override=0)


def test_an_empty_hot_set_still_gets_a_bounded_size(fleet: SyntheticStore) -> None:
    plan = _plan(fleet, [], cold=("llama3.2:1b",))

    assert plan.bytes == 0
    assert plan.size_bytes == MIB
    assert plan.size == "1m"


@pytest.mark.parametrize("headroom", [0.99, "0.5", "abc", float("nan"), float("inf"), True, None])
def test_a_headroom_below_one_or_not_a_number_is_refused(headroom: object) -> None:
    with pytest.raises(InvalidOption, match=r"^headroom: "):
        check_headroom(headroom)


def test_headroom_accepts_numbers_and_numeric_text() -> None:
    assert check_headroom("1.5") == 1.5
    assert check_headroom(1) == 1.0


# ---------------------------------------------------------------- properties

# A pool of layers the generated models draw from, so that they share blobs.
POOL = [text(bytes([index]) * size) for index, size in enumerate([0, 1, 4095, 4096, 4097, 9000])]
POOL += [
    text(f"license {index}".encode(), "application/vnd.ollama.image.license") for index in (1, 2)
]

MODEL_SETS = st.lists(
    st.lists(st.sampled_from(POOL), min_size=1, max_size=5),
    min_size=1,
    max_size=6,
)


def _write(root: Path, layer_lists: list[list[Layer]]) -> SyntheticStore:
    return make_store(root, {f"m{index}:t": layers for index, layers in enumerate(layer_lists)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layer_lists=MODEL_SETS,
    cold_count=st.integers(min_value=0, max_value=3),
    headroom=st.floats(min_value=1.0, max_value=3.0),
)
def test_plan_invariants_hold_for_any_set_of_models_sharing_blobs(
    layer_lists: list[list[Layer]], cold_count: int, headroom: float
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = _write(Path(directory), layer_lists)
        names = list(store.models)
        split = min(cold_count, len(names) - 1)
        cold, hot = names[:split], names[split:]

        plan = _plan(store, hot, tuple(cold), headroom=headroom)
        hot_only = _plan(store, hot, headroom=headroom)

    distinct = {layer.hex: layer.size for name in hot for layer in store.models[name].blobs}
    manifests = [len(store.models[name].manifest_bytes()) for name in hot]
    assert plan.blob_count == len(distinct)
    assert plan.bytes == sum(distinct.values()) + sum(manifests)
    assert plan.tmpfs_bytes >= plan.bytes
    assert plan.tmpfs_bytes % PAGE_SIZE == 0
    assert plan.size_bytes >= plan.tmpfs_bytes * headroom
    assert plan.size_bytes % MIB == 0
    assert plan.size_bytes - MIB < max(plan.tmpfs_bytes * headroom, 1)
    assert plan.to_dict() | {"cold_models": []} == hot_only.to_dict()


@given(
    tmpfs_bytes=st.integers(min_value=0, max_value=1 << 45).map(lambda n: n * PAGE_SIZE),
    headroom=st.floats(min_value=1.0, max_value=10.0),
)
def test_size_is_never_below_bytes_times_headroom(tmpfs_bytes: int, headroom: float) -> None:
    size = size_for(tmpfs_bytes, headroom)

    assert size >= tmpfs_bytes * headroom
    assert size >= MIB
    assert size % MIB == 0
