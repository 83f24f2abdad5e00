"""A strict reader of Prometheus' text exposition format, for the metrics tests."""

from __future__ import annotations

import re

_LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    rf"\{{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE},?)*)\}} "
    r"(?P<value>-?[0-9.eE+]+|NaN|[+-]Inf)\Z"
)
_LABEL = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)=({_LABEL_VALUE})")


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\\"n])", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict reader of the text exposition format: HELP and TYPE before each
    family's samples, valid names, escaped label values, one sample per series."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    described: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            keyword, name, rest = line[2:].split(" ", 2)
            assert keyword in ("HELP", "TYPE"), line
            assert name not in {key[0] for key in samples}, f"{keyword} after samples: {line}"
            described.setdefault(name, set()).add(keyword)
            if keyword == "TYPE":
                assert rest == "gauge", line
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match.group("name")
        assert described.get(name) == {"HELP", "TYPE"}, f"{name} lacks HELP or TYPE"
        labels = frozenset(
            (key, _unescape(value[1:-1])) for key, value in _LABEL.findall(match.group("labels"))
        )
        assert (name, labels) not in samples, f"duplicate series: {line}"
        samples[(name, labels)] = float(match.group("value"))
    return samples


def series(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    found = [value for (metric, got), value in samples.items() if metric == name and wanted <= got]
    assert len(found) == 1, (name, labels, found)
    return found[0]
