"""status: what a store holds, how full it is, what Ollama has loaded."""

from __future__ import annotations

from typing import Any

from .cli_common import (
    COUNT,
    EXIT_STATUS,
    PATH,
    PROG,
    TEXT,
    Options,
    add_command,
    add_state_dir,
    emit,
    existing_store,
    warn,
)
from .defaults import METRICS_MAX_MODELS
from .errors import EXIT_OK

STATUS_DESCRIPTION = """\
Show what a store holds: each model with its size and residency, and the
size and use of the file system it lives on.

Residency: "ram" when every blob is a regular file in the store, "linked"
when every blob is there and at least one is a link to the disk store (a
cold model), "partial" when a blob is missing, a link dangles, a size
disagrees with the manifest or the manifest is unreadable. Nothing is
hashed: use verify for that. Given --source (or "source" in --config), the
models that exist only in the store (pulled into RAM, lost at reboot) are
listed as ram_only."""


STATUS_EPILOG = f"""\
output (--json keys):
  store, models (name, bytes, residency, blobs, linked, missing), mount
  (path, fstype, size_bytes, used_bytes, available_bytes), ram_only,
  collect_seconds; with --ollama-host, ollama (url, up, error, loaded: name,
  size_bytes, vram_bytes, expires_in, never_expires); with --state-dir,
  last_runs (populate, writeback, verify: finished_at, seconds, exit_code, ok,
  error, counts).
  --prometheus FILE writes node_exporter textfile metrics atomically, every
  series labelled by store: ollama_ramdisk_size_bytes, _used_bytes,
  _available_bytes, _models, _model_bytes{{model}},
  _model_resident{{model,residency}}, _ram_only_models, _ram_only_model{{model}},
  _models_left_out{{seen}} (per-model series for at most --metrics-max-models);
  with --ollama-host _ollama_up, _ollama_loaded_models,
  _ollama_model_size_bytes{{model}}, _ollama_model_vram_bytes{{model}},
  _ollama_model_expiry_seconds{{model}}; with --state-dir
  _last_run_timestamp_seconds{{command}}, _last_run_duration_seconds{{command}},
  _last_run_success{{command}} and the counts of each run (_last_refill_*,
  _last_writeback_*, _last_verify_*); and _collect_duration_seconds.

examples:
  {PROG} status --store /mnt/ollama/models
  {PROG} status --config /etc/ollama-ramdisk/config.json --json
  {PROG} status --config /etc/ollama-ramdisk/config.json --ollama-host 127.0.0.1:11434 \\
      --prometheus /var/lib/prometheus/node-exporter/ollama_ramdisk.prom

{EXIT_STATUS}"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "status",
        "show models, residency and use of a store",
        description=STATUS_DESCRIPTION,
        epilog=STATUS_EPILOG,
        progress=False,
    )
    parser.add_argument("--store", metavar="DIR", type=PATH, help="the store to show")
    parser.add_argument(
        "--source",
        metavar="DIR",
        type=PATH,
        help="the disk store, to list the models that exist only in --store",
    )
    parser.add_argument(
        "--prometheus",
        metavar="FILE",
        type=PATH,
        help="also write node_exporter textfile metrics to FILE (atomically)",
    )
    parser.add_argument(
        "--metrics-max-models", type=COUNT, metavar="N",
        help="per-model series for at most N models of the store and N loaded ones (default"
        f" {METRICS_MAX_MODELS}); the others are counted in ollama_ramdisk_models_left_out",
    )  # fmt: skip
    parser.add_argument(
        "--ollama-host", type=TEXT, metavar="HOST[:PORT]",
        help="also show what this Ollama has loaded (/api/ps; OLLAMA_HOST's form)",
    )  # fmt: skip
    add_state_dir(parser, "also show how the last populate, writeback and verify ended")
    parser.add_argument(
        "--verify-unit", type=TEXT, metavar="UNIT",
        help="the check's systemd unit: a verify counts as a success only when its report"
        " and the unit's last run since boot both say so (the report is the store owner's"
        " to write, the unit's result systemd's)",
    )  # fmt: skip


def run(options: Options) -> int:
    from .status_report import collect, status_lines, write_textfile  # noqa: PLC0415

    store = existing_store(options.require("store", "dest"), "--store")
    source_path = options.get("source")
    source = existing_store(source_path, "--source") if source_path is not None else None
    collected = collect(
        store,
        source=source,
        ollama_host=options.get("ollama_host"),
        state_dir=options.get("state_dir"),
        warn=warn,
        verify_unit=options.get("verify_unit"),
    )
    prometheus = options.get("prometheus")
    if prometheus is not None:
        max_models = options.get("metrics_max_models")
        write_textfile(collected, prometheus, max_models or METRICS_MAX_MODELS, warn)
    outcome = collected.to_dict()
    emit(options, outcome, status_lines(outcome))
    return EXIT_OK
