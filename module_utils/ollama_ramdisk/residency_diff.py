"""A store's models and how each is held, as a before/after text for a diff
(the populate module's diff mode), in the words ``status`` uses: ``ram``
(every blob a file in the store), ``linked`` (served through links to the disk
store), ``partial``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .names import parse_name
from .status import RESIDENCIES, store_status
from .store import Store


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
