"""The benchmark harness keeps working: its --quick mode runs every comparison.

CI checks that the benchmarks run and produce a complete table, not their
figures (those depend on the machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    """A module of benchmarks/ (a directory of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# run.py imports synth by its plain name, from its own directory.
bench_run = _load("run")
synth = sys.modules["synth"]

COMPARISON_TITLES = (
    "populate into a fresh tmpfs",
    "populate --verify vs checking then copying",
    "verify the RAM disk",
    "populate with nothing to do (100 models / 300 blobs)",
    "read every blob (a model load)",
    "write the metrics (100 models / 300 blobs)",
    "populate many small blobs (9 models / 20 blobs, 10.0 MiB)",
)


@pytest.mark.skipif(os.geteuid() != 0, reason="the benchmarks mount tmpfs and drop caches")
def test_quick_benchmark_runs_every_comparison_and_writes_the_table(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "run.py"),
            "--quick",
            "--workdir",
            str(tmp_path / "work"),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = output.read_text()
    assert table == done.stdout.rstrip("\n") + "\n"
    for number, title in enumerate(COMPARISON_TITLES, start=1):
        assert f"| **{number}** | *{title}* |" in table
    assert "FAILED" not in table
    assert "opened none of the 300 blob files" in table
    summary = (tmp_path / "results.summary.md").read_text()
    assert summary.startswith("| # | what | ollama-ramdisk | baseline, same run | ratio | target |")
    assert "| 1 | populate into a fresh tmpfs |" in summary
    assert "| 1 | the same, into a 4 KiB-page tmpfs (like for like) |" in summary
    # Every mount point the runs made is gone: nothing left mounted.
    assert not any((tmp_path / "work" / "mnt").iterdir())


def test_synthetic_store_shares_blobs_and_names_them_by_content(tmp_path: Path) -> None:
    built = synth.ensure_store(tmp_path, "fleet", synth.fleet_layout(8 * 1024 * 1024))
    assert len(built.models) == 7
    # Two tags of llama3.1 and the shared licenses/templates: fewer blobs than references.
    references = sum(
        len(json.loads((built.root / rel).read_text())["layers"]) + 1 for rel in built.manifests
    )
    assert len(built.blobs) < references
    assert max(built.blobs.values()) == 4 * 1024 * 1024
    blob = next(rel for rel, size in built.blobs.items() if size == 4 * 1024 * 1024)
    line = subprocess.run(
        ["sha256sum", str(built.root / blob)], capture_output=True, text=True, check=True
    ).stdout
    assert blob.endswith(line.split()[0])


def test_synthetic_store_is_reused_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    layout = synth.many_layout(10, weights_size=1024)
    first = synth.ensure_store(tmp_path, "many", layout)
    assert (len(first.models), len(first.blobs)) == (10, 30)
    blob = first.root / next(iter(first.blobs))
    inode = blob.stat().st_ino
    assert synth.ensure_store(tmp_path, "many", layout).blobs == first.blobs
    assert blob.stat().st_ino == inode
    blob.write_bytes(b"truncated")
    rebuilt = synth.ensure_store(tmp_path, "many", layout)
    assert rebuilt.blobs == first.blobs
    assert blob.stat().st_size == first.blobs[str(blob.relative_to(first.root))]


def test_many_layout_has_one_hundred_models_over_three_hundred_blobs() -> None:
    layout = synth.many_layout()
    configs = {f"config:{model.config_name}" for model in layout}
    labels = configs | {spec.label for model in layout for spec in model.layers}
    assert (len(layout), len(labels)) == (100, 300)


def test_trace_parser_counts_only_real_opens_of_blob_files() -> None:
    blob = "/m/blobs/sha256-" + "a" * 64
    trace = "\n".join(
        [
            f'12 openat(AT_FDCWD, "{blob}", O_RDONLY|O_CLOEXEC) = 3',
            f'12 openat(AT_FDCWD, "{blob}", O_RDONLY|O_PATH|O_CLOEXEC) = 4',
            f'12 openat(AT_FDCWD, "{blob}.tmp", O_WRONLY|O_CREAT, 0644) = 5',
            '12 openat(AT_FDCWD, "/m/blobs", O_RDONLY|O_DIRECTORY|O_CLOEXEC) = 6',
            f'13 openat(AT_FDCWD, "{blob}", O_RDONLY) = -1 ENOENT (No such file or directory)',
        ]
    )
    assert bench_run.blob_opens(trace) == [blob]


report = _load("report")


def _documents(tmp_path: Path) -> tuple[Path, Path, Path]:
    out = tmp_path / "out"
    out.mkdir()
    results, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    results.write_text("# R\n\nby hand\n<!-- bench:loads -->\nold\n<!-- /bench:loads -->\nafter\n")
    readme.write_text("intro\n<!-- bench:loads -->\nold row\n<!-- /bench:loads -->\nend\n")
    return out, results, readme


def test_report_puts_each_benchmarks_tables_between_its_markers(tmp_path: Path) -> None:
    out, results, readme = _documents(tmp_path)
    (out / "loads.md").write_text("## Loads\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    (out / "loads.summary.md").write_text("| short |\n|---|\n")

    assert report.main(["--out", str(out), "--results", str(results), "--readme", str(readme)]) == 0

    assert results.read_text() == (
        "# R\n\nby hand\n<!-- bench:loads -->\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "<!-- /bench:loads -->\nafter\n"
    )
    assert readme.read_text() == (
        "intro\n<!-- bench:loads -->\n\n| short |\n|---|\n\n<!-- /bench:loads -->\nend\n"
    )


def test_report_leaves_alone_what_was_not_run_or_was_a_smoke_run(tmp_path: Path) -> None:
    out, results, readme = _documents(tmp_path)
    before = (results.read_text(), readme.read_text())
    (out / "results.md").write_text("- command: `benchmarks/run.py --quick`\n")

    assert report.main(["--out", str(out), "--results", str(results), "--readme", str(readme)]) == 0

    assert (results.read_text(), readme.read_text()) == before
