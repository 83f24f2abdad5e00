"""The ``ollama-ramdisk`` command line: contract keys, exit statuses, --config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ollama_ramdisk import __version__
from ollama_ramdisk.config import load_config
from ollama_ramdisk.errors import InputProblems, InvalidOption
from ollama_ramdisk.memory import memory_total
from ollama_ramdisk.sizes import GIB, MIB
from storegen import MALFORMED, MountTmpfs, StoreFactory, SyntheticStore, make_store, sparse

PLAN_KEYS = {
    "models", "blob_count", "bytes", "tmpfs_bytes", "headroom", "size_bytes", "size",
    "mem_total", "reserve", "fits",
}  # fmt: skip
HF = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"


def _tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def _config(tmp_path: Path, document: dict[str, Any] | str, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


# ---------------------------------------------------------------- the parser


def test_version_is_the_packages(cli) -> None:
    run = cli("--version")

    assert run.code == 0
    assert run.out.strip() == f"ollama-ramdisk {__version__}"


@pytest.mark.parametrize("command", ["plan", "populate", "verify", "status"])
def test_each_command_has_a_manual_page_as_help(cli, command: str) -> None:
    run = cli(command, "--help")

    assert run.code == 0
    assert run.out.startswith(f"usage: ollama-ramdisk {command} ")
    # argparse calls the options "optional arguments" before Python 3.10.
    assert "options:" in run.out or "optional arguments:" in run.out
    for section in ("output (--json keys):", "examples:", "exit status:"):
        assert section in run.out
    assert f"  ollama-ramdisk {command} --" in run.out


def test_main_help_documents_config_and_exit_status(cli) -> None:
    run = cli("--help")

    assert run.code == 0
    assert "--config FILE reads the long options" in run.out
    assert "2  invalid input" in run.out


def test_no_command_is_a_usage_error(cli) -> None:
    run = cli()

    assert run.code == 2
    assert run.err.startswith("usage: ollama-ramdisk")
    assert "ollama-ramdisk: error: the following arguments are required: COMMAND" in run.err
    assert run.out == ""


@pytest.mark.parametrize(
    ("argv", "fault"),
    [
        (["plan", "--headroom", "0.9"], "argument --headroom: '0.9' is below 1.0"),
        (["plan", "--headroom", "abc"], "argument --headroom: 'abc' is not a number"),
        (["plan", "--reserve", "12x"], "argument --reserve: '12x' is not a SIZE"),
        (["plan", "--size=-1g"], "argument --size: '-1g' is not a SIZE"),
        (["plan", "--mem-total", "lots"], "argument --mem-total: 'lots' is not a SIZE"),
        (["populate", "--jobs", "0"], "argument --jobs: must be at least 1"),
        (["populate", "--jobs", "two"], "argument --jobs: expected a whole number"),
        (["populate", "--lock-timeout", "-5"], "argument --lock-timeout: expected a finite"),
        (["populate", "--owner", ""], "argument --owner: expected a non-empty string"),
        (["verify", "--jobs", "0"], "argument --jobs: must be at least 1"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
        (["status", "--store"], "argument --store: expected one argument"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(cli, argv: list[str], fault: str) -> None:
    run = cli(*argv)

    assert run.code == 2
    assert f"ollama-ramdisk: error: {fault}" in run.err
    assert run.out == ""


# ---------------------------------------------------------------- plan


def test_plan_json_has_the_contract_keys_and_counts_shared_blobs_once(
    cli, fleet: SyntheticStore
) -> None:
    hot = ["llama3.2:3b", "llama3.2:latest", HF]

    run = cli("plan", "--json", "--source", fleet.root, "--mem-total", "64g", *hot)

    assert run.code == 0
    plan = run.json
    assert set(plan) >= PLAN_KEYS
    assert plan["blob_count"] == len(fleet.distinct_blobs(*hot))
    assert plan["bytes"] == fleet.bytes_of(*hot)
    assert [model["name"] for model in plan["models"]] == [
        "registry.ollama.ai/library/llama3.2:3b",
        "registry.ollama.ai/library/llama3.2:latest",
        HF,
    ]
    assert plan["headroom"] == 1.2
    assert plan["size_bytes"] == MIB
    assert plan["size"] == "1m"
    assert plan["mem_total"] == 64 * GIB
    assert plan["reserve"] == 64 * GIB // 10
    assert plan["fits"] is True
    assert run.err == ""


def test_plan_for_people_lists_models_and_the_size(cli, fleet: SyntheticStore) -> None:
    run = cli("plan", "--source", fleet.root, "--cold", "qwen2.5-coder:7b", "llama3.2:1b")

    assert run.code == 0
    lines = run.out.splitlines()
    assert lines[0] == "hot models (1):"
    assert lines[1].split()[0] == "llama3.2:1b"
    assert "cold models (1), linked to the source, not counted:" in lines
    assert "  qwen2.5-coder:7b" in lines
    assert "size            1m at headroom 1.2 (1048576)" in lines
    assert lines[-1] == "fits            yes (tightest: memory)"


def test_plan_options_change_the_size(cli, fleet: SyntheticStore) -> None:
    run = cli(
        "plan", "--json", "--source", fleet.root, "--headroom", "3", "--size", "2g", "llama3.2:1b"
    )

    assert run.code == 0
    assert run.json["headroom"] == 3.0
    assert run.json["size"] == "2g"
    assert run.json["size_override"] is True


def test_plan_that_does_not_fit_exits_1_and_still_prints_the_plan(
    cli, store_factory: StoreFactory
) -> None:
    # Sparse blobs: the manifest declares more than this host has, cheaply.
    huge = 2 * memory_total()
    built = store_factory({"giant:405b": [sparse(huge, "giant")]})

    run = cli("plan", "--json", "--source", built.root, "giant:405b")

    assert run.code == 1
    assert run.json["fits"] is False
    assert run.json["bytes"] > huge
    assert "the model set does not fit: it needs a RAM disk of" in run.err
    assert "too much. Use fewer or smaller models (or make some of them cold)" in run.err


def test_a_reserve_larger_than_memory_does_not_fit(cli, fleet: SyntheticStore) -> None:
    run = cli("plan", "--source", fleet.root, "--mem-total", "8g", "--reserve", "8g", "llama3.2:1b")

    assert run.code == 1
    assert run.out.splitlines()[-1] == "fits            NO (tightest: memory)"


def test_a_forced_size_below_the_set_warns(cli, store_factory: StoreFactory) -> None:
    built = store_factory({"big:1": [sparse(3 * MIB, "big")]})

    run = cli("plan", "--source", built.root, "--size", "1m", "big:1")

    assert run.code == 0
    assert "warning: the forced size 1m is below" in run.err


@pytest.mark.parametrize(
    "name", ["../x", "a/b/c/d", "m;rm -rf /", "x%y", "llama 3", "llama3\nrm", "", "m" * 81]
)
def test_a_rejected_name_exits_2_and_creates_nothing(cli, fleet: SyntheticStore, name: str) -> None:
    before = _tree(fleet.root)

    run = cli("plan", "--source", fleet.root, name)

    assert run.code == 2
    assert "invalid model name" in run.err or "model name is empty" in run.err
    assert repr(name) in run.err or name == ""
    assert _tree(fleet.root) == before


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_manifest_exits_2_naming_the_file(
    cli, fleet: SyntheticStore, case: str
) -> None:
    content, reason = MALFORMED[case]
    path = fleet.write_manifest("broken:1", content)

    run = cli("plan", "--source", fleet.root, "broken:1")

    assert run.code == 2
    assert f"ollama-ramdisk: error: {path}: " in run.err
    assert reason in run.err


def test_a_blob_whose_size_disagrees_exits_2_naming_the_file(cli, fleet: SyntheticStore) -> None:
    blob = fleet.blob_path(fleet.models["llama3.2:1b"].layers[0])
    os.truncate(blob, 7)

    run = cli("plan", "--source", fleet.root, "llama3.2:1b")

    assert run.code == 2
    assert f"ollama-ramdisk: error: {blob}: 7 bytes, but the manifest" in run.err


def test_every_problem_is_reported_together(cli, fleet: SyntheticStore) -> None:
    broken = fleet.write_manifest("broken:1", b"[]")

    run = cli(
        "plan", "--json", "--source", fleet.root, "x%y", "mistral:7b", "broken:1", "llama3.2:1b"
    )

    assert run.code == 2
    errors = [line for line in run.err.splitlines() if line.startswith("ollama-ramdisk: error:")]
    assert len(errors) == 3
    assert "'x%y'" in errors[0]
    assert "mistral:7b is not in the store" in errors[1]
    assert str(broken) in errors[2]
    assert run.json["exit_code"] == 2
    assert len(run.json["problems"]) == 3


def test_a_case_only_mismatch_is_reported_clearly(cli, fleet: SyntheticStore) -> None:
    run = cli("plan", "--source", fleet.root, "Llama3.2:1B")

    assert run.code == 2
    assert "model Llama3.2:1B is not in the store" in run.err
    assert "the store has llama3.2:1b, which differs only in case" in run.err


def test_plan_without_models_is_invalid(cli, fleet: SyntheticStore) -> None:
    run = cli("plan", "--source", fleet.root)

    assert run.code == 2
    assert "no models to plan" in run.err


def test_plan_without_a_source_names_the_option(cli, tmp_path: Path) -> None:
    missing = cli("plan", "llama3")
    absent = cli("plan", "--source", tmp_path / "absent", "llama3")

    assert missing.code == absent.code == 2
    assert "--source is required (or 'source' in --config)" in missing.err
    assert f"--source: {tmp_path / 'absent'} is not a directory" in absent.err


def test_errors_with_json_print_one_json_object(cli, tmp_path: Path) -> None:
    run = cli("plan", "--json", "--source", tmp_path / "absent", "llama3")

    assert run.code == 2
    assert run.json == {
        "error": f"--source: {tmp_path / 'absent'} is not a directory",
        "problems": [f"--source: {tmp_path / 'absent'} is not a directory"],
        "exit_code": 2,
    }


# ---------------------------------------------------------------- --config


def test_config_supplies_every_option_and_the_models(
    cli, fleet: SyntheticStore, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        {"source": str(fleet.root), "models": ["llama3.2:1b", HF], "cold": ["acme/embedder:v1"],
         "headroom": 1.5, "reserve": "1g", "mem-total": "32g", "json": True},
    )  # fmt: skip

    run = cli("plan", "--config", config)

    assert run.code == 0
    assert [model["name"] for model in run.json["models"]] == [
        "registry.ollama.ai/library/llama3.2:1b",
        HF,
    ]
    assert run.json["cold_models"] == ["registry.ollama.ai/acme/embedder:v1"]
    assert (run.json["headroom"], run.json["reserve"], run.json["mem_total"]) == (
        1.5,
        GIB,
        32 * GIB,
    )


def test_the_command_line_overrides_the_config(cli, fleet: SyntheticStore, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {"source": str(fleet.root), "models": ["llama3.2:1b"], "cold": [HF], "headroom": 2},
    )

    run = cli(
        "--config", config, "plan", "--json", "--headroom", "1.1", "--cold", "acme/embedder:v1",
        "qwen2.5-coder:7b",
    )  # fmt: skip

    assert run.code == 0
    assert [model["name"] for model in run.json["models"]] == [
        "registry.ollama.ai/library/qwen2.5-coder:7b"
    ]
    assert run.json["cold_models"] == ["registry.ollama.ai/acme/embedder:v1"]
    assert run.json["headroom"] == 1.1


def test_a_yaml_config_is_read_where_pyyaml_is_installed(
    cli, fleet: SyntheticStore, tmp_path: Path
) -> None:
    pytest.importorskip("yaml")
    config = _config(
        tmp_path,
        f"source: {fleet.root}\nmodels:\n  - llama3.2:1b\n  - acme/embedder:v1\njson: yes\n",
        "config.yaml",
    )

    run = cli("plan", "--config", config)

    assert run.code == 0
    assert len(run.json["models"]) == 2


def test_relative_paths_in_a_config_are_taken_from_its_directory(
    cli, store_factory: StoreFactory, tmp_path: Path
) -> None:
    store_factory({"m:1": [b"weights"]}, name="etc/store")
    config = _config(tmp_path / "etc", {"source": "store", "models": ["m:1"]})

    run = cli("plan", "--json", "--config", config)

    assert run.code == 0
    assert run.json["bytes"] > len(b"weights")


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        ({"models": ["m"], "modles": ["x"]}, "unknown key 'modles'"),
        ({"keepalive": "5m"}, "unknown key 'keepalive'"),
        ({"models": "llama3"}, "'models': expected a list of model names"),
        ({"models": ["ok", 3]}, "'models': expected model names as strings"),
        ({"jobs": 0}, "'jobs': must be at least 1"),
        ({"verify": "maybe"}, "'verify': expected true or false"),
        ({"reserve": "lots"}, "'reserve': 'lots' is not a SIZE"),
        ({"headroom": "x"}, "'headroom': expected a number"),
        ({"source": ""}, "'source': expected a non-empty string"),
        ({"fallback-link": True, "fallback_link": False}, "are the same key"),
        ([1, 2], "expected a mapping of option names to values"),
    ],
)
def test_a_bad_config_exits_2_naming_the_file_and_key(
    cli, tmp_path: Path, document: object, fault: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(document))

    run = cli("plan", "--config", config, "llama3")

    assert run.code == 2
    assert f"ollama-ramdisk: error: config {config}: " in run.err
    assert fault in run.err


def test_every_config_problem_is_reported_together(tmp_path: Path) -> None:
    config = _config(tmp_path, {"bogus": 1, "jobs": -1, "models": "x"})

    with pytest.raises(InputProblems) as caught:
        load_config(config)

    assert len(caught.value.problems) == 3


def test_a_missing_or_unparsable_config_is_invalid_input(cli, tmp_path: Path) -> None:
    garbage = _config(tmp_path, "{ not: json: nor [yaml")

    missing = cli("plan", "--config", tmp_path / "absent.json", "llama3")
    unparsable = cli("plan", "--config", garbage, "llama3")

    assert missing.code == unparsable.code == 2
    assert "cannot be read (No such file or directory)" in missing.err
    assert f"config {garbage}: " in unparsable.err


def test_config_keys_take_either_spelling_and_null_means_unset(tmp_path: Path) -> None:
    dashed = load_config(_config(tmp_path, {"fallback-link": True, "dry-run": "false"}, "a.json"))
    underscored = load_config(_config(tmp_path, {"fallback_link": True, "owner": None}, "b.json"))

    assert dashed == {"fallback_link": True, "dry_run": False}
    assert underscored == {"fallback_link": True}


def test_the_roles_config_file_is_accepted(tmp_path: Path) -> None:
    # What the ollama_ramdisk role writes for ExecStartPre.
    config = _config(
        tmp_path,
        {"source": "/usr/share/ollama/.ollama/models", "dest": "/mnt/ollama/models",
         "models": ["llama3.1:8b"], "cold": [], "fallback-link": True, "prune": False,
         "verify": False, "owner": "ollama:ollama", "jobs": 2},
    )  # fmt: skip

    values = load_config(config)

    assert values["dest"] == Path("/mnt/ollama/models")
    assert values["fallback_link"] is True
    assert values["jobs"] == 2


def test_a_config_that_is_not_utf8_is_invalid(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(b"\xff\xfe")

    with pytest.raises(InvalidOption, match="not UTF-8"):
        load_config(config)


# ---------------------------------------------------------------- status


def test_status_json_reports_models_and_the_mount(
    cli, tmpfs: MountTmpfs, store_factory: StoreFactory
) -> None:
    ramdisk = tmpfs("8m")
    store_factory({"m:1": [b"weights"], "n:1": [b"other"]}, root=ramdisk / "models")

    run = cli("status", "--json", "--store", ramdisk / "models")

    assert run.code == 0
    assert run.json["store"] == str(ramdisk / "models")
    assert [(model["name"], model["residency"]) for model in run.json["models"]] == [
        ("registry.ollama.ai/library/m:1", "ram"),
        ("registry.ollama.ai/library/n:1", "ram"),
    ]
    assert set(run.json["mount"]) == {
        "path", "fstype", "size_bytes", "used_bytes", "available_bytes"
    }  # fmt: skip
    assert (run.json["mount"]["path"], run.json["mount"]["fstype"]) == (str(ramdisk), "tmpfs")
    assert run.json["mount"]["size_bytes"] == 8 * MIB


def test_status_for_people_and_prometheus_file(
    cli, tmpfs: MountTmpfs, store_factory: StoreFactory, tmp_path: Path
) -> None:
    ramdisk = tmpfs("8m")
    store_factory({"m:1": [b"weights"]}, root=ramdisk / "models")
    prom = tmp_path / "ollama_ramdisk.prom"

    run = cli("status", "--store", ramdisk / "models", "--prometheus", prom)

    assert run.code == 0
    assert f"mount {ramdisk} (tmpfs): 8.0 MiB" in run.out
    assert "  ram " in run.out
    assert "registry.ollama.ai/library/m:1" in run.out
    assert "ollama_ramdisk_models{" in prom.read_text()


def test_status_reads_the_store_from_the_configs_dest_and_lists_ram_only_models(
    cli, store_factory: StoreFactory, tmp_path: Path
) -> None:
    source = store_factory({"m:1": [b"weights"]}, name="source")
    dest = store_factory({"m:1": [b"weights"], "pulled:1": [b"new"]}, name="dest")
    config = _config(tmp_path, {"source": str(source.root), "dest": str(dest.root), "models": []})

    run = cli("status", "--json", "--config", config)

    assert run.code == 0
    assert run.json["store"] == str(dest.root)
    assert run.json["ram_only"] == ["registry.ollama.ai/library/pulled:1"]


def test_status_without_a_store_names_the_option(cli, tmp_path: Path) -> None:
    run = cli("status")
    absent = cli("status", "--store", tmp_path / "absent")

    assert run.code == absent.code == 2
    assert "--store is required" in run.err
    assert f"--store: {tmp_path / 'absent'} is not a directory" in absent.err


def test_an_io_error_exits_1_naming_the_path(
    cli, store_factory: StoreFactory, tmp_path: Path
) -> None:
    built = store_factory({"m:1": [b"weights"]})
    target = tmp_path / "no-such-dir" / "x.prom"

    run = cli("status", "--store", built.root, "--prometheus", target)

    assert run.code == 1
    assert f"ollama-ramdisk: error: {tmp_path / 'no-such-dir'}: No such file" in run.err
    assert "No such file or directory" in run.err


# ---------------------------------------------------------------- verify


def test_verify_repair_without_a_source_is_invalid(cli, fleet: SyntheticStore) -> None:
    run = cli("verify", "--store", fleet.root, "--repair")

    assert run.code == 2
    assert "--repair needs --source" in run.err


# ---------------------------------------------------------------- the installed command


def test_the_console_script_exits_2_on_a_bad_name(fleet: SyntheticStore) -> None:
    command = Path(sys.executable).with_name("ollama-ramdisk")

    done = subprocess.run(
        [str(command), "plan", "--source", str(fleet.root), "../x"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    assert "invalid model name '../x'" in done.stderr


def test_the_module_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ollama_ramdisk.cli", "status", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr


# ---------------------------------------------------------------- populate

POPULATE_KEYS = {
    "changed", "copied", "linked", "fallback", "pruned", "ram_only", "skipped", "bytes_copied",
    "seconds", "dry_run",
}  # fmt: skip
HOT = ["llama3.2:3b", "llama3.2:latest", HF]
COLD = ["qwen2.5-coder:7b"]


@pytest.fixture
def ramdisk(tmpfs: MountTmpfs) -> Path:
    # populate.py, progress.py and verify.py are written in parallel with the CLI:
    # these tests run as soon as they exist (test_module_populate fails loudly meanwhile).
    for module in ("populate", "progress"):
        pytest.importorskip(f"ollama_ramdisk.{module}")
    return tmpfs("8m", name="ramdisk")


def _service_config(tmp_path: Path, fleet: SyntheticStore, dest: Path, **extra: Any) -> Path:
    """A config like the one the role writes for ExecStartPre."""
    document = {
        "source": str(fleet.root), "dest": str(dest), "models": HOT, "cold": COLD,
        "fallback-link": True, "prune": False, "verify": False, "owner": "root:root",
        "jobs": 2, **extra,
    }  # fmt: skip
    return _config(tmp_path, document)


def test_populate_runs_from_the_config_alone_as_exec_start_pre_does(
    cli, fleet: SyntheticStore, ramdisk: Path, tmp_path: Path
) -> None:
    dest = ramdisk / "models"
    config = _service_config(tmp_path, fleet, dest)

    first = cli("populate", "--config", config, "--json")
    second = cli("populate", "--config", config, "--json")

    assert first.code == second.code == 0
    assert set(first.json) >= POPULATE_KEYS
    assert first.json["changed"] is True
    assert sorted(first.json["copied"]) == sorted(
        layer.relpath for layer in fleet.distinct_blobs(*HOT).values()
    )
    for name in HOT + COLD:
        assert (dest / fleet.models[name].manifest_relpath).read_bytes() == fleet.manifest_path(
            name
        ).read_bytes()
    for layer in fleet.distinct_blobs(*HOT).values():
        assert (dest / layer.relpath).read_bytes() == fleet.blob_path(layer).read_bytes()
        assert not (dest / layer.relpath).is_symlink()
    assert second.json["changed"] is False
    assert second.json["copied"] == []
    assert second.json["bytes_copied"] == 0


def test_populate_for_people_says_what_it_copied(cli, fleet: SyntheticStore, ramdisk: Path) -> None:
    dest = ramdisk / "models"

    run = cli("populate", "--quiet", "--source", fleet.root, "--dest", dest, "llama3.2:1b")
    again = cli("populate", "--quiet", "--source", fleet.root, "--dest", dest, "llama3.2:1b")

    blobs = len(fleet.models["llama3.2:1b"].blobs)
    assert run.code == 0
    assert run.out.startswith(f"copied {blobs} blobs (")
    assert f"{blobs} already in place" in again.out
    assert again.out.splitlines()[-1] == "nothing to change: the RAM disk already holds the set"


def test_populate_dry_run_changes_nothing(
    cli, fleet: SyntheticStore, ramdisk: Path, tmp_path: Path
) -> None:
    dest = ramdisk / "models"
    config = _service_config(tmp_path, fleet, dest)

    run = cli("populate", "--config", config, "--dry-run", "--json")

    assert run.code == 0
    assert run.json["dry_run"] is True
    assert _tree(ramdisk) == []


def test_populate_with_a_rejected_name_creates_nothing(
    cli, fleet: SyntheticStore, ramdisk: Path
) -> None:
    dest = ramdisk / "models"

    run = cli("populate", "--source", fleet.root, "--dest", dest, "llama3.2:1b", "../../etc")

    assert run.code == 2
    assert "invalid model name '../../etc'" in run.err
    assert _tree(ramdisk) == []


def test_populate_needs_a_source_and_a_dest(cli, fleet: SyntheticStore) -> None:
    run = cli("populate", "--source", fleet.root, "llama3.2:1b")

    assert run.code == 2
    assert "--dest is required (or 'dest' in --config)" in run.err


def test_a_set_too_large_for_the_ramdisk_exits_1(
    cli, store_factory: StoreFactory, ramdisk: Path
) -> None:
    built = store_factory({"big:1": [9 * MIB]})  # the tmpfs holds 8 MiB

    run = cli("populate", "--quiet", "--source", built.root, "--dest", ramdisk / "models", "big:1")

    assert run.code == 1
    assert "ollama-ramdisk: error: " in run.err
    assert not list(ramdisk.rglob("sha256-*"))
    assert not (ramdisk / "models" / built.models["big:1"].manifest_relpath).exists()


def test_no_prune_on_the_command_line_overrides_the_config(
    cli, fleet: SyntheticStore, ramdisk: Path, tmp_path: Path
) -> None:
    dest = ramdisk / "models"
    assert (
        cli("populate", "-q", "--source", fleet.root, "--dest", dest, "acme/embedder:v1").code == 0
    )
    config = _service_config(tmp_path, fleet, dest, prune=True)
    embedder = dest / fleet.models["acme/embedder:v1"].manifest_relpath

    kept = cli("populate", "-q", "--config", config, "--no-prune", "--json")
    assert kept.code == 0
    assert embedder.exists()
    assert kept.json["pruned"] == []

    pruned = cli("populate", "-q", "--config", config, "--json")
    assert pruned.code == 0
    assert not embedder.exists()
    assert fleet.models["acme/embedder:v1"].manifest_relpath in pruned.json["pruned"]


def test_verify_finds_a_corrupt_blob_and_repair_fixes_it(
    cli, fleet: SyntheticStore, ramdisk: Path
) -> None:
    pytest.importorskip("ollama_ramdisk.verify")
    dest = ramdisk / "models"
    assert cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b").code == 0
    weights = fleet.models["llama3.2:1b"].layers[0]
    in_ram = make_store(dest)
    in_ram.corrupt(weights)

    found = cli("verify", "-q", "--json", "--store", dest)
    repaired = cli("verify", "-q", "--json", "--store", dest, "--repair", "--source", fleet.root)
    clean = cli("verify", "-q", "--store", dest, "llama3.2:1b")

    assert found.code == 1
    assert found.json["ok"] is False
    assert found.json["corrupt"] == [weights.relpath]
    assert repaired.code == 0
    assert repaired.json["repaired"] == [weights.relpath]
    assert (dest / weights.relpath).read_bytes() == fleet.blob_path(weights).read_bytes()
    assert clean.code == 0
    assert clean.out.splitlines()[0].endswith(": ok")
