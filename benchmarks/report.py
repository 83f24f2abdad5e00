#!/usr/bin/env python3
"""Put the last benchmark run's tables into benchmarks/RESULTS.md and the README.

    .venv/bin/python benchmarks/report.py        # after run.py, loads.py, fleet.py, pages.py,
                                                 # distribution.py

Each benchmark writes its tables to benchmarks/out/NAME.md and a short table
for the README to benchmarks/out/NAME.summary.md. This replaces what lies
between the markers ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``: in
RESULTS.md with the tables (their first heading dropped: the section has its
own), in README.md with the summary. The text around the markers is written
by hand, after reading the figures. A smoke run (--quick) is never reported.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
NAMES = ("run", "loads", "fleet", "pages", "distribution")
# run.py names its output results.md; the others their own name.
OUTPUTS = {"run": "results"}


def region(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- bench:{name} -->\n)(.*?)(<!-- /bench:{name} -->)", flags=re.DOTALL)


def tables(text: str) -> str:
    lines = text.strip("\n").splitlines()
    if lines and lines[0].startswith("## "):
        lines = lines[1:]
    return "\n".join(lines).strip("\n") + "\n"


def splice(document: Path, name: str, content: str) -> bool:
    text = document.read_text()
    pattern = region(name)
    if not pattern.search(text):
        return False
    # A blank line each side: the tables stand apart from the markers in the source.
    document.write_text(pattern.sub(lambda found: f"{found[1]}\n{content}\n{found[3]}", text))
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the benchmarks wrote")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    for name in NAMES:
        full = args.out / f"{OUTPUTS.get(name, name)}.md"
        short = full.with_suffix(".summary.md")
        if not full.is_file():
            print(f"report: {name}: no {full.name} (not run): left as it was", file=sys.stderr)
            continue
        text = full.read_text()
        if "--quick" in text:
            print(f"report: {name}: a --quick smoke run: not reported", file=sys.stderr)
            continue
        for document, content in (
            (args.results, tables(text)),
            (args.readme, short.read_text() if short.is_file() else None),
        ):
            if content is None:
                continue
            if splice(document, name, content):
                print(f"report: {name}: {document.name} updated", file=sys.stderr)
            else:
                print(
                    f"report: {name}: {document.name} has no bench:{name} markers", file=sys.stderr
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
