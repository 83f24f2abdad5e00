"""The plan knows how Ollama loads (mmap or a copy) and every memory limit the RAM disk meets.

Synthetic hosts: memory and GPUs given as options, cgroup limits as real
cgroup v2 files (the format the kernel writes) in a temporary tree. The real
systemd path (``--unit``) is exercised in Molecule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ollama_ramdisk.limits import GB, cgroup_limits, detect_gpus, parse_limit, service_limits
from ollama_ramdisk.plan import build_plan, resolve_model_set
from ollama_ramdisk.sizes import GIB, MIB
from storegen import StoreFactory, SyntheticStore, sparse, text, weights

LICENSE = ("application/vnd.ollama.image.license", b"MIT")


@pytest.fixture
def store(store_factory: StoreFactory) -> SyntheticStore:
    return store_factory(
        {
            "big:1": [sparse(3 * GIB, "big"), LICENSE],
            "small:1": [weights(200_000, "small"), LICENSE],
        }
    )


def _plan(store: SyntheticStore, **options: object):
    model_set = resolve_model_set(store.store, ["big:1", "small:1"])
    return build_plan(model_set, **{"reserve": 4 * GIB, **options})  # type: ignore[arg-type]


def test_without_gpus_loads_copy_the_largest_model_and_that_counts(store: SyntheticStore) -> None:
    plan = _plan(store, gpus=False, mem_total=64 * GIB)

    assert plan.load.mmap is False
    assert "no GPU" in plan.load.reason
    assert plan.load.copy_bytes == 3 * GIB
    memory = plan.limits[0]
    assert memory.needed == plan.size_bytes + 3 * GIB + 4 * GIB
    assert plan.to_dict()["load_copy_bytes"] == 3 * GIB
    assert plan.to_dict()["mmap"] is False


def test_a_set_that_fits_only_without_the_copy_is_refused_naming_memory_and_the_excess(
    store: SyntheticStore,
) -> None:
    size = _plan(store, gpus=True, mem_total=1024 * GIB).size_bytes
    mem_total = size + 4 * GIB + GIB  # room for the RAM disk and the reserve, not a 3 GiB copy

    with_gpus = _plan(store, gpus=True, mem_total=mem_total)
    without = _plan(store, gpus=False, mem_total=mem_total)

    assert without.fits is False
    assert without.to_dict()["limit_source"] == "memory"
    (refusal,) = without.refusals()
    assert "plus 3.0 GiB that a load copies into the engine (no GPU)" in refusal
    assert "2.0 GiB too much" in refusal
    # With GPUs, memory this tight also turns mmap off (MemAvailable below 8 GB + the model).
    assert with_gpus.load.mmap is False
    assert "GPUs, but with the RAM disk full only" in with_gpus.load.reason
    assert with_gpus.fits is False


def test_gpus_and_room_map_the_weights_and_add_nothing(store: SyntheticStore) -> None:
    plan = _plan(store, gpus=True, mem_total=256 * GIB, reserve=40 * GIB)

    assert plan.load.mmap is True
    assert plan.load.copy_bytes == 0
    assert plan.load.mmap_needs == 3 * GIB + max(8 * GB, 256 * GIB // 10)
    assert plan.fits
    assert plan.warnings() == []


def test_a_reserve_below_what_keeps_mmap_on_warns_on_a_gpu_host(store: SyntheticStore) -> None:
    plan = _plan(store, gpus=True, mem_total=256 * GIB, reserve=8 * GIB)

    (warning,) = plan.warnings()
    assert "the reserve of 8.0 GiB is below the" in warning
    assert _plan(store, gpus=False, mem_total=256 * GIB, reserve=8 * GIB).warnings() == []


def test_a_unit_limit_below_the_set_plus_a_load_is_the_tightest_and_refused(
    store: SyntheticStore,
) -> None:
    limits = service_limits("ollama.service", memory_max=4 * GIB)
    plan = _plan(store, gpus=False, mem_total=64 * GIB, unit_limits=limits)

    assert limits == [("ollama.service MemoryMax", 4 * GIB)]
    assert plan.fits is False
    assert plan.to_dict()["limit_source"] == "ollama.service MemoryMax"
    unit = next(limit for limit in plan.limits if limit.source == "ollama.service MemoryMax")
    assert unit.needed == plan.size_bytes + 3 * GIB
    (refusal,) = plan.refusals()
    assert refusal.startswith("the model set does not fit under ollama.service MemoryMax (4.0 GiB)")
    assert "the refill charges the RAM disk's pages to that unit" in refusal


def _cgroup(root: Path, path: str, **files: str) -> Path:
    directory = root.joinpath(*path.split("/"))
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name.replace("_", ".")).write_text(content + "\n")
    return directory


def test_limits_are_read_from_the_units_cgroup_and_its_parents(tmp_path: Path) -> None:
    _cgroup(tmp_path, "system.slice", memory_max="max", memory_high=str(64 * GIB))
    unit = _cgroup(tmp_path, "system.slice/ollama.service", memory_max=str(16 * GIB))
    _cgroup(tmp_path, "system.slice/ollama.service", memory_high="max")

    found = cgroup_limits(unit, tmp_path)

    assert found == [
        (str(unit / "memory.max"), 16 * GIB),
        (str(tmp_path / "system.slice" / "memory.high"), 64 * GIB),
    ]


def test_plan_reads_a_cgroup_given_on_the_command_line(
    cli, store: SyntheticStore, tmp_path: Path
) -> None:
    unit = _cgroup(tmp_path, "system.slice/ollama.service", memory_max=str(2 * GIB))

    run = cli(
        "plan", "--json", "--source", store.root, "--no-gpus", "--mem-total", "64g",
        "--unit-cgroup", unit, "big:1",
    )  # fmt: skip

    assert run.code == 1
    assert run.json["limit_source"] == str(unit / "memory.max")
    assert [limit["fits"] for limit in run.json["limits"]] == [True, False]
    assert f"does not fit under {unit / 'memory.max'} (2.0 GiB)" in run.err


def test_a_garbled_limit_file_is_an_input_error(cli, store: SyntheticStore, tmp_path: Path) -> None:
    unit = _cgroup(tmp_path, "ollama.service", memory_max="lots")

    run = cli("plan", "--source", store.root, "--unit-cgroup", unit, "big:1")

    assert run.code == 2
    assert "'lots' is not a memory limit" in run.err


def test_the_plan_json_names_the_load_and_the_limits(cli, store: SyntheticStore) -> None:
    run = cli(
        "plan", "--json", "--source", store.root, "--gpus", "--mem-total", "1t",
        "--unit-memory-max", "600g", "--unit-memory-high", "500g", "big:1", "small:1",
    )  # fmt: skip

    assert run.code == 0, run.err
    assert run.json["gpus"] is True
    assert run.json["mmap"] is True
    assert run.json["load_copy_bytes"] == 0
    sources = [limit["source"] for limit in run.json["limits"]]
    assert sources == ["memory", "the service MemoryMax", "the service MemoryHigh"]
    assert run.json["limit_source"] == "the service MemoryHigh"
    assert "mmap_reason" in json.dumps(run.json)


@pytest.mark.parametrize(
    ("text_value", "expected"),
    [("max", None), ("infinity", None), ("1073741824", GIB), (str(1 << 62), None)],
)
def test_limit_values(text_value: str, expected: int | None) -> None:
    assert parse_limit(text_value, "x") == expected


def test_gpus_are_found_from_the_drivers_files(tmp_path: Path) -> None:
    nvidia, kfd = tmp_path / "nvidia", tmp_path / "kfd"
    assert detect_gpus(nvidia, kfd) is False
    (kfd / "0").mkdir(parents=True)
    (kfd / "0" / "properties").write_text("cpu_cores_count 16\nsimd_count 0\n")
    assert detect_gpus(nvidia, kfd) is False  # the CPU node of a ROCm host
    (kfd / "1").mkdir()
    (kfd / "1" / "properties").write_text("cpu_cores_count 0\nsimd_count 256\n")
    assert detect_gpus(nvidia, kfd) is True
    (nvidia / "0000:3b:00.0").mkdir(parents=True)
    assert detect_gpus(nvidia, tmp_path / "none") is True


def test_cold_models_are_not_loads_the_plan_counts(store_factory: StoreFactory) -> None:
    built = store_factory({"hot:1": [text(b"h" * 4096)], "cold:1": [sparse(8 * GIB, "c")]})
    model_set = resolve_model_set(built.store, ["hot:1"], ["cold:1"])

    plan = build_plan(model_set, gpus=False, mem_total=64 * GIB, reserve=4 * GIB)

    assert plan.load.copy_bytes == 4096
    assert plan.size_bytes == MIB
