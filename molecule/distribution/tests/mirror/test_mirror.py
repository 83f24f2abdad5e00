"""What crossed the network: each blob from the mirror once to each host that
lacked it, never to the seed; and what the fleet hosts' disk stores now hold.

The mirror's access log (its journal on mirror-01) names each request's
client; Ollama fetches a blob's content in ranges (206) after one GET that only
learns the blob's address, which it closes unread.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

import testinfra
from conftest import Store, names

_ACCESS = re.compile(
    r'^(?P<client>[0-9.]+) - - \[[^\]]+\] "GET (?P<path>[^ ?]+)\??[^ ]* [^"]*" 206 (?P<bytes>\d+)'
)


@lru_cache(maxsize=1)
def mirror_fetches() -> dict[str, dict[str, int]]:
    """client address -> blob hex -> content bytes sent, from the mirror's journal."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    mirror = testinfra.get_host(f"ansible://mirror-01?ansible_inventory={inventory}")
    log = mirror.check_output("journalctl --unit mirror-registry.service --output cat --no-pager")
    sent: dict[str, dict[str, int]] = {}
    for line in log.splitlines():
        match = _ACCESS.match(line)
        if match and "/blobs/sha256:" in match["path"]:
            digest = match["path"].rsplit("sha256:", 1)[1]
            per_host = sent.setdefault(match["client"], {})
            per_host[digest] = per_host.get(digest, 0) + int(match["bytes"])
    return sent


def _address(host: Any) -> str:
    return host.check_output("hostname -I").split()[0]


def _blobs(disk: Store, hostvars: dict[str, Any]) -> dict[str, int]:
    wanted = names(
        hostvars["ollama_ramdisk_models"] + hostvars.get("ollama_ramdisk_cold_models", [])
    )
    return {
        blob.split("-", 1)[1]: disk.blobs[blob]["size"]
        for name in wanted
        for blob in disk.blob_names(name)
    }


def test_each_blob_came_from_the_mirror_once_and_only_to_hosts_that_lacked_it(
    host: Any, hostvars: dict[str, Any], disk: Store
) -> None:
    fetched = mirror_fetches().get(_address(host), {})
    if "empty_stores" in hostvars["group_names"]:
        # Whole, once, and nothing more: a second run (idempotence) fetched nothing.
        assert fetched == _blobs(disk, hostvars)
    else:
        assert fetched == {}, "the seed had every model: it fetched nothing"


def test_the_pulled_models_are_the_seeds_and_belong_to_the_service_user(
    host: Any, hostvars: dict[str, Any], disk: Store, fixture_record: dict[str, Any]
) -> None:
    ollama = host.user("ollama")
    for name in names(hostvars["ollama_ramdisk_models"]):
        recorded = fixture_record[name.display]["blobs"]
        assert [layer["digest"] for layer in disk.layers(name)] == recorded
    owners = {
        (entry["uid"], entry["gid"]) for entry in [*disk.blobs.values(), *disk.manifests.values()]
    }
    assert owners == {(ollama.uid, ollama.gid)}
    # The mirror's names were removed after the copy (or the push): only the
    # names the inventory, or the seed's own pulls, gave remain.
    registries = {path.split("/")[1] for path in disk.manifests}
    assert hostvars["ollama_ramdisk_registry_mirror"] not in registries
    if "empty_stores" in hostvars["group_names"]:
        assert registries == {"registry.ollama.ai"}
