"""plan: size a RAM disk for a model set and check that it fits."""

from __future__ import annotations

from typing import Any

from .cli_common import (
    PATH,
    PROG,
    SIZE,
    TEXT,
    Options,
    add_cold,
    add_command,
    add_flag,
    add_models,
    emit,
    existing_store,
    exit_status_text,
    headroom_arg,
    warn,
)
from .config import to_names
from .defaults import HEADROOM
from .errors import EXIT_FAILED, EXIT_OK, InvalidOption
from .limits import service_limits
from .plan import Plan, build_plan, check_headroom, resolve_model_set
from .sizes import human

PLAN_DESCRIPTION = """\
Size a RAM disk for a model set, and check that it fits in memory.

Every MODEL's manifest is read from the source store and each of its blobs
checked to exist with the size the manifest states; every missing or
malformed model is reported together. Blobs shared between models are
counted once; tmpfs allocates whole pages, so each file is rounded up to
4096 bytes. The size is ceil(tmpfs bytes x headroom) in whole MiB; it fits
when it is at most the host's memory (or its cgroup limit, if lower) minus
the reserve left to the system, to Ollama and to models loaded without
memory mapping. Cold models are checked but not counted."""


PLAN_EPILOG = f"""\
output (--json keys):
  models (name, manifest, blobs, bytes), blob_count, bytes, tmpfs_bytes,
  headroom, size_bytes, size (fstab form), mem_total, reserve, gpus, mmap,
  mmap_reason, load_copy_bytes (what a load adds when it copies the weights),
  limits (source, bytes, needed, fits), limit_source (the tightest), fits.
  The plan is printed even when it does not fit.

examples:
  {PROG} plan --source /usr/share/ollama/.ollama/models llama3.2:3b mistral:7b
  {PROG} plan --source /srv/ollama --cold qwen2.5:72b --headroom 1.1 llama3.1:8b
  {PROG} plan --config /etc/ollama-ramdisk/config.json --json
  {PROG} plan --source /srv/ollama --mem-total 512g --reserve 48g llama3.1:405b
  {PROG} plan --config /etc/ollama-ramdisk/config.json --unit ollama.service
  {PROG} plan --source /srv/ollama --gpus --mem-total 1t --unit-memory-max 600g llama3.1:405b

{exit_status_text("the set does not fit in memory, or an I/O error")}"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "plan",
        "size a RAM disk for a model set",
        description=PLAN_DESCRIPTION,
        epilog=PLAN_EPILOG,
        progress=False,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (OLLAMA_MODELS)")
    parser.add_argument(
        "--headroom",
        type=headroom_arg,
        metavar="RATIO",
        help=f"size = model bytes x RATIO, at least 1.0 (default {HEADROOM})",
    )
    parser.add_argument(
        "--reserve",
        type=SIZE,
        metavar="SIZE",
        help="memory to leave free (default: the larger of 4g and 10%% of memory)",
    )
    parser.add_argument(
        "--size",
        type=SIZE,
        metavar="SIZE",
        help="force the RAM disk's size instead of sizing it from the models",
    )
    parser.add_argument(
        "--mem-total",
        type=SIZE,
        metavar="SIZE",
        help="plan for a host with this much memory (default: this host's, or its cgroup limit)",
    )
    add_flag(parser, "gpus", "plan for a host with GPUs, or without (default: look for them)")
    parser.add_argument(
        "--unit", type=TEXT, metavar="UNIT",
        help="also fit under this unit's and its slices' MemoryMax= and MemoryHigh= (systemd)",
    )  # fmt: skip
    parser.add_argument(
        "--unit-memory-max", type=SIZE, metavar="SIZE",
        help="the unit's MemoryMax, for another host (instead of asking systemd)",
    )  # fmt: skip
    parser.add_argument(
        "--unit-memory-high", type=SIZE, metavar="SIZE",
        help="the unit's MemoryHigh, for another host (instead of asking systemd)",
    )  # fmt: skip
    parser.add_argument(
        "--unit-cgroup", type=PATH, metavar="DIR",
        help="read the limits from this cgroup (v2) directory and its parents instead",
    )  # fmt: skip
    add_cold(parser)
    add_models(parser, "hot model to hold in RAM")


def run(options: Options) -> int:
    source = existing_store(options.require("source"), "--source")
    hot = to_names(options.get("models", []))
    cold = to_names(options.get("cold", []))
    if not hot and not cold:
        raise InvalidOption("no models to plan: name them as arguments or as 'models' in --config")
    headroom = check_headroom(options.get("headroom", HEADROOM))
    model_set = resolve_model_set(source, hot, cold)
    plan = build_plan(
        model_set,
        headroom,
        reserve=options.get("reserve"),
        mem_total=options.get("mem_total"),
        size_override=options.get("size"),
        gpus=options.get("gpus"),
        unit_limits=service_limits(
            options.get("unit"),
            memory_max=options.get("unit_memory_max"),
            memory_high=options.get("unit_memory_high"),
            cgroup=options.get("unit_cgroup"),
        ),
    )
    emit(options, plan.to_dict(), plan_lines(plan))
    short = plan.short_of_set()
    if short is not None:
        warn(f"warning: {short}")
    for warning in plan.warnings():
        warn(f"warning: {warning}")
    for refusal in plan.refusals():
        warn(refusal)
    return EXIT_OK if plan.fits else EXIT_FAILED


def plan_lines(plan: Plan) -> list[str]:
    lines = [f"hot models ({len(plan.model_set.hot)}):"]
    width = max((len(manifest.name.short) for manifest in plan.model_set.manifests), default=0)
    for manifest in plan.model_set.hot:
        size = human(manifest.blob_bytes + len(manifest.raw))
        lines.append(f"  {manifest.name.short:<{width}}  {size:>10}  {len(manifest.blobs)} blobs")
    if plan.model_set.cold:
        lines.append(
            f"cold models ({len(plan.model_set.cold)}), linked to the source, not counted:"
        )
        lines += [f"  {manifest.name.short}" for manifest in plan.model_set.cold]
    available = plan.mem_total - plan.reserve
    forced = " (forced)" if plan.size_override else f" at headroom {plan.headroom:g}"
    lines += [
        f"distinct blobs  {plan.blob_count}",
        f"bytes           {human(plan.bytes)} ({plan.bytes})",
        f"tmpfs bytes     {human(plan.tmpfs_bytes)} ({plan.tmpfs_bytes}, whole pages)",
        f"size            {plan.size}{forced} ({plan.size_bytes})",
        f"memory          {human(plan.mem_total)}, reserve {human(plan.reserve)}: "
        f"{human(max(available, 0))} available",
        f"loads           {'map the weights' if plan.load.mmap else 'copy the weights'}"
        f" ({plan.load.reason})",
        f"a load adds     {human(plan.load.copy_bytes)}",
        *(
            f"limit           {limit.source}: {human(limit.bytes)}, needs {human(limit.needed)}"
            f"{'' if limit.fits else ' (over)'}"
            for limit in plan.limits
        ),
        f"fits            {'yes' if plan.fits else 'NO'} (tightest: {plan.tightest.source})",
    ]
    return lines
