"""Ollama's start-up prune, made real by aging the RAM disk, removes nothing."""

from __future__ import annotations

import re
from typing import Any

from conftest import FIXTURE_STATE, Name, Store, journal, listed_models


def test_every_file_and_link_of_the_ram_disk_is_still_there(host: Any) -> None:
    before = host.file(f"{FIXTURE_STATE}/aged-before.txt").content_string
    after = host.file(f"{FIXTURE_STATE}/aged-after.txt").content_string
    assert "blobs/sha256-" in before
    assert after == before


def test_ollama_pruned_for_real_and_removed_nothing(host: Any, ram: Store) -> None:
    log = journal(host)
    assert "corrupt manifests detected" not in log
    counted = re.search(r"total blobs: (\d+)", log)
    assert counted, log[-3000:]
    # Every blob was old enough to be a candidate: the prune really looked at them.
    assert int(counted.group(1)) == len(ram.blobs)
    assert "total unused blobs removed: 0" in log


def test_ollama_still_lists_every_model(host: Any, hot: list[Name], cold: list[Name]) -> None:
    assert listed_models(host) == {name.display for name in hot + cold}
