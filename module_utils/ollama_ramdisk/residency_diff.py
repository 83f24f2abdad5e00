"""A populate with its diff: the store's models and how each is held, before
and after, as text (the populate module's diff mode), in the words ``status``
uses: ``ram`` (every blob a file in the store), ``linked`` (served through
links to the disk store), ``partial``. In a dry run, "after" is what the
changes would leave."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .names import parse_name
from .populate import PopulateOptions, populate
from .progress import Reporter
from .status import RESIDENCIES, store_status
from .store import Store


def populate_with_diff(options: PopulateOptions, reporter: Reporter, diff: bool) -> dict[str, Any]:
    """populate's result; with ``diff``, also its ``diff`` (before, after, headers)."""
    dest = Path(options.dest)
    before = residencies(dest) if diff else {}
    outcome = populate(options, reporter).to_dict()
    if diff:
        if options.dry_run:
            after = expected_residencies(before, options.models, options.cold, outcome)
        else:
            after = residencies(dest)
        header = f"{dest} (models)"
        outcome["diff"] = {
            "before_header": header,
            "after_header": header,
            "before": render_residencies(before),
            "after": render_residencies(after),
        }
    return outcome


def residencies(dest: Path) -> dict[str, str]:
    """Each model in ``dest`` (qualified name) and its residency; {} without a store."""
    if not dest.is_dir():
        return {}
    return {
        parse_name(model["name"]).qualified: model["residency"]
        for model in store_status(Store(dest)).to_dict()["models"]
    }


def expected_residencies(
    before: Mapping[str, str],
    hot: Iterable[str],
    cold: Iterable[str],
    outcome: Mapping[str, Any],
) -> dict[str, str]:
    """What a dry run's changes would leave (check mode's diff): removed models
    gone, hot ones in RAM, cold and written-back ones linked."""
    after = {name: kind for name, kind in before.items() if name not in outcome["models_removed"]}
    after.update(dict.fromkeys((parse_name(name).qualified for name in hot), "ram"))
    after.update(dict.fromkeys((parse_name(name).qualified for name in cold), "linked"))
    after.update(dict.fromkeys(outcome["written_back"], "linked"))
    return after


def render_residencies(models: Mapping[str, str]) -> str:
    """One line per model, in RAM first: a unified diff then shows each move."""
    order = {kind: rank for rank, kind in enumerate(RESIDENCIES)}
    ranked = sorted(models.items(), key=lambda item: (order.get(item[1], len(order)), item[0]))
    return "".join(f"{kind}: {name}\n" for name, kind in ranked)
