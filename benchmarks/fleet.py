#!/usr/bin/env python3
"""What an idempotent `playbooks/site.yml` run costs per host, and where it goes.

    sudo .venv/bin/python benchmarks/fleet.py              # 5 timed runs
    sudo .venv/bin/python benchmarks/fleet.py --keep       # leave the instances up

A fleet of hundreds of servers pays every second of a run that changes
nothing. Three systemd instances (molecule/fleet: the demo's model set, the
real Ollama) are provisioned once by site.yml; then site.yml runs again,
changing nothing, on one instance and on all three, in turn. Each run's wall
time is measured, its JSON log (ansible.posix.json) gives every task's
duration, and a run that changes anything is refused: the figures are those
of a fleet at rest. Needs root (Docker).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "fleet.md"
SCENARIO = "fleet"
HOSTS = ("ollama-fleet-01", "ollama-fleet-02", "ollama-fleet-03")
MOLECULE = ROOT / ".venv" / "bin" / "molecule"
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


def molecule(*argv: str) -> None:
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    subprocess.run([str(MOLECULE), *argv, "--scenario-name", SCENARIO], cwd=ROOT, env=env,
                   check=True)  # fmt: skip


def ephemeral_dir() -> Path:
    """Molecule's working directory of this scenario for this checkout."""
    found = [
        path
        for path in Path.home().glob(f".ansible/tmp/molecule.*.{SCENARIO}")
        if (path / "ansible.cfg").is_file()
        and str(ROOT / "library") in (path / "ansible.cfg").read_text(errors="replace")
    ]
    if not found:
        raise SystemExit("fleet: molecule's working directory of the scenario was not found")
    return max(found, key=lambda path: path.stat().st_mtime)


def run_site(workdir: Path, limit: str) -> tuple[float, dict]:
    """One site.yml run: (wall seconds, its JSON log)."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
        "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
    }
    argv = [str(PLAYBOOK), "-i", str(workdir / "inventory"), "--limit", limit,
            "-e", "ollama_fleet_serial=100%", str(ROOT / "playbooks" / "site.yml")]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"fleet: site.yml failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout[done.stdout.index("{") :])


def task_seconds(log: dict) -> dict[str, float]:
    """Each task's duration (its slowest host), by role and task name."""
    seconds: dict[str, float] = defaultdict(float)
    for play in log["plays"]:
        for task in play["tasks"]:
            duration = task["task"].get("duration", {})
            if not duration.get("start") or not duration.get("end"):
                continue
            start = _stamp(duration["start"])
            end = _stamp(duration["end"])
            seconds[task["task"]["name"]] += end - start
    return seconds


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def changed_tasks(log: dict) -> list[str]:
    return [
        task["task"]["name"]
        for play in log["plays"]
        for task in play["tasks"]
        if any(result.get("changed") for result in task["hosts"].values())
    ]


def executed(log: dict, host: str) -> int:
    """Tasks the host ran (not skipped): each is at least one round trip."""
    return sum(
        1
        for play in log["plays"]
        for task in play["tasks"]
        if host in task["hosts"] and not task["hosts"][host].get("skipped")
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--keep", action="store_true", help="leave the instances up")
    parser.add_argument("--top", type=int, default=12, help="tasks listed (default 12)")
    args = parser.parse_args(argv)
    molecule("converge")
    try:
        workdir = ephemeral_dir()
        run_site(workdir, ",".join(HOSTS))  # settle: a converge may leave handlers' work
        walls: dict[str, list[float]] = {"1 host": [], f"{len(HOSTS)} hosts": []}
        per_task: dict[str, list[float]] = defaultdict(list)
        count = 0
        for _ in range(args.repeat):
            for label, limit in (("1 host", HOSTS[0]), (f"{len(HOSTS)} hosts", ",".join(HOSTS))):
                wall, log = run_site(workdir, limit)
                if changed_tasks(log):
                    raise SystemExit(f"fleet: not idempotent: {changed_tasks(log)}")
                walls[label].append(wall)
                if label == "1 host":
                    count = executed(log, HOSTS[0])
                    for name, seconds in task_seconds(log).items():
                        per_task[name].append(seconds)
    finally:
        if not args.keep:
            molecule("destroy")
    one = statistics.median(walls["1 host"])
    many = statistics.median(walls[f"{len(HOSTS)} hosts"])
    lines = [
        "## An idempotent site.yml run",
        "",
        f"molecule/fleet, {len(HOSTS)} systemd instances on one machine ({os.cpu_count()} cores),"
        f" median of {args.repeat}, `benchmarks/fleet.py`. Nothing changed in any run.",
        "",
        "| hosts | median wall | per host | tasks run per host |",
        "|---|---|---|---|",
        f"| 1 | {one:.1f} s | {one:.1f} s | {count} |",
        f"| {len(HOSTS)} (one batch) | {many:.1f} s | {many / len(HOSTS):.1f} s | {count} |",
        "",
        f"### The {args.top} slowest tasks (1 host, median)",
        "",
        "| task | median |",
        "|---|---|",
    ]
    medians = sorted(((statistics.median(v), k) for k, v in per_task.items()), reverse=True)
    lines += [f"| {name} | {seconds:.2f} s |" for seconds, name in medians[: args.top]]
    total = sum(seconds for seconds, _ in medians)
    lines += ["", f"All {len(medians)} tasks together: {total:.1f} s of the {one:.1f} s.", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    args.output.with_suffix(".summary.md").write_text("\n".join(lines[4:8]) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
