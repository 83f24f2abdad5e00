"""The metrics: run reports kept by populate, writeback and verify, read back
by status as hostile files, the textfile checked by Debian's promtool, and the
Grafana dashboard's queries checked against the series the exporter writes.

The server's own series (what Ollama has loaded) are tested against the real
Ollama in test_real_ollama.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from exposition import parse_exposition, series
from ollama_ramdisk.metrics import OllamaView, prometheus_text
from ollama_ramdisk.names import parse_name
from ollama_ramdisk.ollama_api import RunningModel, parse_go_time
from ollama_ramdisk.runreport import REPORTED_COMMANDS, make_report, parse_report, report_name
from ollama_ramdisk.status import store_status
from ollama_ramdisk.store import Store
from storegen import MountTmpfs, SyntheticStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs mounts need root")

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboards" / "ollama-ramdisk.json"
HOT = ["llama3.2:3b", "llama3.2:1b"]
UID, GID = 65534, 65534


@pytest.fixture(scope="session")
def promtool() -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure-host.sh"), "promtool"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"ensure-host.sh promtool failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


def promtool_check(promtool: Path, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def ram(tmpfs: MountTmpfs) -> Path:
    return tmpfs("16m") / "models"


def _report(state_dir: Path, command: str) -> dict:
    return json.loads((state_dir / report_name(command)).read_text())


def _corrupt_one_blob(ram: Path) -> Path:
    blob = max((ram / "blobs").iterdir(), key=lambda path: path.stat().st_size)
    with blob.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"bit rot")
    return blob


# ---------------------------------------------------------------- run reports


def test_each_run_keeps_its_report_and_status_exports_them(  # noqa: PLR0917 - fixtures
    cli, fleet: SyntheticStore, ram: Path, state_dir: Path, tmp_path: Path, promtool: Path
) -> None:
    common = ["--state-dir", state_dir]
    filled = cli("populate", "-q", "--source", fleet.root, "--dest", ram, *common, *HOT)
    written = cli("writeback", "-q", "--source", fleet.root, "--dest", ram, *common)
    bad = _corrupt_one_blob(ram)
    checked = cli("verify", "-q", "--store", ram, *common)
    textfile = tmp_path / "ollama_ramdisk.prom"

    shown = cli("status", "--json", "--store", ram, "--prometheus", textfile, *common)

    assert (filled.code, written.code, checked.code, shown.code) == (0, 0, 1, 0)
    assert f"blobs/{bad.name}" in checked.out
    refill = _report(state_dir, "populate")
    assert refill["ok"] is True
    assert refill["counts"]["copied_blobs"] == len(fleet.distinct_blobs(*HOT))
    assert refill["counts"]["fallback_blobs"] == 0
    check = _report(state_dir, "verify")
    assert (check["ok"], check["exit_code"]) == (False, 1)
    assert check["counts"]["corrupt_blobs"] == 1
    samples = parse_exposition(textfile.read_text())
    for command, success in (("populate", 1), ("writeback", 1), ("verify", 0)):
        assert series(samples, "ollama_ramdisk_last_run_success", command=command) == success
        stamp = series(samples, "ollama_ramdisk_last_run_timestamp_seconds", command=command)
        assert time.time() - 60 < stamp <= time.time()
    assert series(samples, "ollama_ramdisk_last_refill_copied_bytes") == sum(
        layer.size for layer in fleet.distinct_blobs(*HOT).values()
    )
    assert series(samples, "ollama_ramdisk_last_verify_corrupt_blobs") == 1
    assert series(samples, "ollama_ramdisk_last_verify_repaired_blobs") == 0
    assert series(samples, "ollama_ramdisk_last_writeback_written_models") == 0
    assert (
        shown.json["last_runs"]["verify"]["counts"]["checked_blobs"]
        == check["counts"]["checked_blobs"]
    )
    assert promtool_check(promtool, textfile.read_text()).returncode == 0


def test_a_repair_is_counted(cli, fleet: SyntheticStore, ram: Path, state_dir: Path) -> None:
    cli("populate", "-q", "--source", fleet.root, "--dest", ram, *HOT)
    _corrupt_one_blob(ram)

    run = cli("verify", "-q", "--store", ram, "--repair", "--source", fleet.root,
              "--state-dir", state_dir)  # fmt: skip

    assert run.code == 0, run.err
    counts = _report(state_dir, "verify")["counts"]
    assert (counts["corrupt_blobs"], counts["repaired_blobs"]) == (1, 1)


def test_a_failed_refill_is_reported_with_its_error(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs, state_dir: Path
) -> None:
    small = tmpfs("128k") / "models"

    run = cli("populate", "-q", "--source", fleet.root, "--dest", small, "--state-dir", state_dir,
              *HOT)  # fmt: skip

    assert run.code == 1
    report = _report(state_dir, "populate")
    assert (report["ok"], report["exit_code"]) == (False, 1)
    assert report["error"]
    assert report["error"] in run.err
    assert report["counts"] == {}


def test_a_dry_run_and_a_run_without_a_state_dir_keep_no_report(
    cli, fleet: SyntheticStore, ram: Path, state_dir: Path
) -> None:
    dry = cli("populate", "-q", "--dry-run", "--source", fleet.root, "--dest", ram,
              "--state-dir", state_dir, *HOT)  # fmt: skip
    plain = cli("populate", "-q", "--source", fleet.root, "--dest", ram, *HOT)

    assert (dry.code, plain.code) == (0, 0)
    assert list(state_dir.iterdir()) == []


def test_a_missing_state_dir_is_a_warning_never_a_failed_run(
    cli, fleet: SyntheticStore, ram: Path, tmp_path: Path
) -> None:
    run = cli("populate", "-q", "--source", fleet.root, "--dest", ram,
              "--state-dir", tmp_path / "absent", *HOT)  # fmt: skip

    assert run.code == 0, run.err
    assert f"state-dir: {tmp_path / 'absent'} is missing" in run.err
    assert not (tmp_path / "absent").exists()


def test_a_root_run_writes_the_report_as_the_state_dirs_owner(
    cli, fleet: SyntheticStore, ram: Path, state_dir: Path
) -> None:
    os.chown(state_dir, UID, GID)

    run = cli("populate", "-q", "--source", fleet.root, "--dest", ram, "--state-dir", state_dir,
              *HOT)  # fmt: skip

    assert run.code == 0, run.err
    report = state_dir / report_name("populate")
    assert (report.stat().st_uid, report.stat().st_gid) == (UID, GID)
    assert [path.name for path in state_dir.iterdir()] == [report.name]


def test_a_state_dir_that_is_a_link_is_never_written_through(
    cli, fleet: SyntheticStore, ram: Path, state_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "state-link"
    link.symlink_to(state_dir)

    run = cli("populate", "-q", "--source", fleet.root, "--dest", ram, "--state-dir", link, *HOT)

    assert run.code == 0, run.err
    assert "state-dir" in run.err
    assert "symlink" in run.err
    assert list(state_dir.iterdir()) == []


def _valid_report(command: str) -> bytes:
    report = make_report(command, seconds=1.5, exit_code=0, outcome={"copied": ["a"]})
    return json.dumps(report.to_dict()).encode()


def _plant_fifo(path: Path) -> None:
    os.mkfifo(path)


HOSTILE = {
    "a link to a root-only file": lambda path, secret: path.symlink_to(secret),
    "a FIFO": lambda path, _secret: _plant_fifo(path),
    "a directory": lambda path, _secret: path.mkdir(),
    "too large": lambda path, _secret: path.write_bytes(b" " * (1 << 20) + b"{}"),
    "not JSON": lambda path, _secret: path.write_bytes(b'{"command": '),
    "another command's": lambda path, _secret: path.write_bytes(_valid_report("verify")),
    "a negative time": lambda path, _secret: path.write_bytes(
        _valid_report("populate").replace(b'"seconds": 1.5', b'"seconds": -1')
    ),
    "a boolean exit code": lambda path, _secret: path.write_bytes(
        _valid_report("populate").replace(b'"exit_code": 0', b'"exit_code": true')
    ),
    "a count it does not know": lambda path, _secret: path.write_bytes(
        _valid_report("populate").replace(b'"copied_blobs"', b'"planted"')
    ),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_report_is_ignored_with_a_warning(  # noqa: PLR0917 - fixtures
    cli, fleet: SyntheticStore, ram: Path, state_dir: Path, tmp_path: Path, kind: str
) -> None:
    cli("populate", "-q", "--source", fleet.root, "--dest", ram, *HOT)
    secret = tmp_path / "secret.json"
    secret.write_bytes(_valid_report("populate"))
    secret.chmod(0o600)
    os.chown(state_dir, UID, GID)
    HOSTILE[kind](state_dir / report_name("populate"), secret)
    (state_dir / report_name("writeback")).write_bytes(_valid_report("writeback"))
    textfile = tmp_path / "out.prom"
    outcome: dict = {}

    def run_status() -> None:
        outcome["run"] = cli("status", "--store", ram, "--state-dir", state_dir,
                             "--prometheus", textfile)  # fmt: skip

    worker = threading.Thread(target=run_status, daemon=True)
    worker.start()
    worker.join(timeout=30)

    assert not worker.is_alive(), "status hung on the planted report"
    run = outcome["run"]
    assert run.code == 0, run.err
    assert f"{state_dir / report_name('populate')}" in run.err
    assert "ignored" in run.err
    samples = parse_exposition(textfile.read_text())
    assert not [key for key in samples if ("command", "populate") in key[1]]
    assert series(samples, "ollama_ramdisk_last_run_success", command="writeback") == 1


def test_report_parsing_refuses_every_field_out_of_its_type() -> None:
    good = _valid_report("writeback").replace(b'"copied_blobs": 1', b'"written_models": 1')
    document = json.loads(good)
    document["counts"] = {"written_models": 1}
    good = json.dumps(document).encode()
    assert parse_report(good, "writeback") is not None
    for key, value in [
        ("finished_at", "yesterday"),
        ("finished_at", float("nan")),
        ("seconds", None),
        ("exit_code", -1),
        ("error", ["a", "list"]),
        ("counts", {"written_models": 2**70}),
        ("counts", {"written_models": 1.5}),
        ("counts", []),
    ]:
        broken = {**document, key: value}
        assert parse_report(json.dumps(broken).encode(), "writeback") is None, (key, value)


def test_go_times_as_ollama_writes_them() -> None:
    # The seconds as `date -u -d 2319-03-13T15:00:58Z +%s` gives them.
    expected = 11019510058.202140
    assert parse_go_time("2319-03-13T15:00:58.202140475Z") == pytest.approx(expected, abs=1e-5)
    assert parse_go_time("2026-12-01T15:18:41Z") == 1796138321.0
    assert parse_go_time("2026-12-01T16:18:41.5+01:00") == 1796138321.5
    for bad in ("", "soon", "2026-12-01 15:18:41Z", "2026-13-01T15:18:41Z", 12, None):
        assert parse_go_time(bad) is None


# ---------------------------------------------------------------- every series


def every_series_text(ram: Path, source: SyntheticStore) -> str:
    """A textfile with every family the exporter writes: a mount, RAM-only models,
    a server with loaded models, and a report of each command."""
    status = store_status(Store(ram), source=source.store)
    loaded = RunningModel(parse_name(HOT[0]), 5_000_000, 0, time.time() + 300)
    ollama = OllamaView(base="http://127.0.0.1:11434", up=True, models=(loaded,))
    outcomes = {
        "populate": {"copied": ["x"], "bytes_copied": 9, "linked": [], "fallback": ["y"]},
        "writeback": {"written": ["m"], "bytes_copied": 9, "forgotten": []},
        "verify": {"checked": 3, "bytes": 9, "corrupt": ["b"], "missing": [], "repaired": ["b"]},
    }
    reports = {
        command: make_report(command, seconds=1.0, exit_code=0, outcome=outcomes[command])
        for command in REPORTED_COMMANDS
    }
    return prometheus_text(status, ollama=ollama, reports=reports, collect_seconds=0.01)


@pytest.fixture
def exported(cli, fleet: SyntheticStore, ram: Path) -> str:
    cli("populate", "-q", "--source", fleet.root, "--dest", ram, *HOT)
    made_in_ram = ram / "manifests/registry.ollama.ai/library/made-here"
    made_in_ram.mkdir(parents=True)
    llama = ram / "manifests/registry.ollama.ai/library/llama3.2/3b"
    (made_in_ram / "latest").write_bytes(llama.read_bytes())
    return every_series_text(ram, fleet)


def exported_families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_every_family_passes_promtool(exported: str, promtool: Path) -> None:
    checked = promtool_check(promtool, exported)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(exported_families(exported)) >= 30


# ---------------------------------------------------------------- the dashboard

# What PromQL spells with letters besides series names: functions, aggregations,
# keywords. A name the exporter does not write and that is not one of these fails.
PROMQL_WORDS = frozenset({
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset", "time", "timestamp",
    "rate", "irate", "increase", "delta", "changes", "resets", "abs", "ceil", "floor", "round",
    "clamp_min", "clamp_max", "sort", "sort_desc", "label_replace", "label_join", "vector",
    "scalar", "absent", "absent_over_time", "max_over_time", "min_over_time", "avg_over_time",
    "last_over_time", "count_over_time",
})  # fmt: skip
_STRIP = [
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"\[[^\]]*\]"),  # ranges
    re.compile(r"\b\d+(?:\.\d+)?(?:e\d+)?\b"),  # numbers
]
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def series_in(expr: str) -> set[str]:
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    for pattern in _STRIP:
        expr = pattern.sub(" ", expr)
    return {word for word in _WORD.findall(expr) if word not in PROMQL_WORDS and not word.isdigit()}


def _queries(node: object) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets and variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, (str, dict)):
                text = value if isinstance(value, str) else value.get("query", "")
                found.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", text))
            else:
                found += _queries(value)
    elif isinstance(node, list):
        for item in node:
            found += _queries(item)
    return found


def test_every_dashboard_query_reads_only_series_the_exporter_writes(exported: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    families = exported_families(exported)
    variables = [item for item in dashboard["templating"]["list"] if item["type"] == "query"]
    queries = _queries(dashboard["panels"]) + _queries(variables)

    used = set().union(*(series_in(query) for query in queries))

    assert len(queries) >= 10
    assert used, "no series found in the dashboard's queries"
    assert used <= families, f"not written by the exporter: {sorted(used - families)}"
    # What the dashboard is for: use, residency, loaded models, fallbacks, RAM-only, integrity.
    assert {
        "ollama_ramdisk_size_bytes",
        "ollama_ramdisk_used_bytes",
        "ollama_ramdisk_model_resident",
        "ollama_ramdisk_ollama_loaded_models",
        "ollama_ramdisk_ollama_model_size_bytes",
        "ollama_ramdisk_last_refill_fallback_blobs",
        "ollama_ramdisk_ram_only_models",
        "ollama_ramdisk_last_verify_corrupt_blobs",
        "ollama_ramdisk_last_verify_repaired_blobs",
    } <= used


def test_the_dashboard_is_one_grafana_can_import() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["uid"] == "ollama-ramdisk"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert {"datasource", "instance"} <= set(names)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert "$instance" in target["expr"] or "${instance}" in target["expr"], panel["title"]
