#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: fill a RAM disk with Ollama models from a disk store."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_ramdisk_populate
short_description: Fill a RAM disk with Ollama models from a disk store
description:
  - Makes O(dest) an Ollama model store holding the hot models as real files
    (copied from O(source)) and the cold models with their blobs linked to
    O(source), each blob copied once however many models share it.
  - Nothing partial ever stands under a final name; a manifest is installed
    only after all of its blobs; free space is checked before the first byte
    is written; concurrent runs on one O(dest) take turns on a lock.
  - A second run with the same models copies nothing and reports no change.
  - With O(prune), models no longer in the set are removed, except models that
    exist only in O(dest) (pulled into RAM), which are kept and returned in
    RV(ram_only).
  - Models that write-back recorded in O(source) (see M(ollama_ramdisk_writeback))
    are kept as cold unless listed, and returned in RV(written_back).
options:
  source:
    description:
      - The disk store to copy from (an C(OLLAMA_MODELS) directory).
    type: path
    required: true
  dest:
    description:
      - The store to fill, normally C(models) on the tmpfs RAM disk. Created if missing.
      - Must not lie inside O(source), nor O(source) inside it.
    type: path
    required: true
  models:
    description:
      - Hot models, copied into O(dest) (C([host/][namespace/]model[:tag])).
    type: list
    elements: str
    default: []
  cold_models:
    description:
      - Cold models, their manifests copied and their blobs linked to O(source)
        (unless a hot model needs the same blob).
    type: list
    elements: str
    default: []
  verify:
    description:
      - Hash every blob while copying it; a blob whose sha256 differs from its
        name is not installed and the module fails.
    type: bool
    default: false
  prune:
    description:
      - Remove manifests not in the set and blobs no remaining manifest uses,
        never a model that exists only in O(dest).
    type: bool
    default: false
  owner:
    description:
      - C(user) or C(user:group) to own every directory and file created.
    type: str
  jobs:
    description:
      - Blobs copied in parallel; default one per CPU of the host, at most 4.
    type: int
  fallback_link:
    description:
      - When a hot blob cannot be copied (out of space, read error, hash
        mismatch), link it to O(source) instead, list it in RV(fallback) and
        succeed with a warning, so that every model stays available.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another run holding the lock of O(dest).
    type: float
    default: 600.0
attributes:
  check_mode:
    support: full
    description: A dry run that reports what would be copied, linked and pruned and changes nothing.
  diff_mode:
    support: full
    description:
      - The models in O(dest) before and after, one per line with its residency
        in the words of C(ollama-ramdisk status) (C(ram) every blob copied,
        C(linked) served through links to O(source), C(partial) a blob missing).
notes:
  - Run long copies with C(async) so that SSH sessions do not time out.
seealso:
  - module: ollama_ramdisk_plan
  - module: ollama_ramdisk_verify
author:
  - ollama-ramdisk maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Fill the RAM disk, removing models no longer in the set
  ollama_ramdisk_populate:
    source: /usr/share/ollama/.ollama/models
    dest: /mnt/ollama/models
    models:
      - llama3.1:70b
      - qwen2.5-coder:32b
    cold_models:
      - mistral:7b
    owner: ollama:ollama
    prune: true
    jobs: 4
  async: 7200
  poll: 10

- name: Show what a change of the set would copy, without copying
  ollama_ramdisk_populate:
    source: /usr/share/ollama/.ollama/models
    dest: /mnt/ollama/models
    models: [llama3.1:70b]
    prune: true
  check_mode: true
  diff: true
"""

RETURN = r"""
changed:
  description: Whether anything in O(dest) was (or in check mode would be) created or removed.
  returned: always
  type: bool
copied:
  description: Blobs copied, relative to the store (C(blobs/sha256-<hex>)).
  returned: success
  type: list
  elements: str
  sample: [blobs/sha256-6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa]
linked:
  description: Blobs of cold models linked to O(source).
  returned: success
  type: list
  elements: str
fallback:
  description: Hot blobs that could not be copied and were linked to O(source) instead.
  returned: success
  type: list
  elements: str
pruned:
  description: Manifests and blobs removed, relative to the store.
  returned: success
  type: list
  elements: str
  sample: [manifests/registry.ollama.ai/library/gemma2/27b]
ram_only:
  description: Models that exist only in O(dest) (pulled into RAM) and were kept.
  returned: success
  type: list
  elements: str
written_back:
  description: Models written back from RAM earlier (recorded in O(source)) and kept as cold.
  returned: success
  type: list
  elements: str
skipped:
  description: Blobs already in place.
  returned: success
  type: int
bytes_copied:
  description: Bytes copied.
  returned: success
  type: int
seconds:
  description: Time the run took.
  returned: success
  type: float
dry_run:
  description: Whether this was a dry run (check mode).
  returned: success
  type: bool
manifests:
  description: Models whose manifest was installed or replaced.
  returned: success
  type: list
  elements: str
models_added:
  description: Models that were not in O(dest) before, fully qualified.
  returned: success
  type: list
  elements: str
  sample: [registry.ollama.ai/library/llama3.1:70b]
models_removed:
  description: Models pruned from O(dest), fully qualified.
  returned: success
  type: list
  elements: str
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ollama_ramdisk.defaults import LOCK_TIMEOUT
from ansible.module_utils.ollama_ramdisk.module_glue import call_core
from ansible.module_utils.ollama_ramdisk.populate import (
    PopulateOptions,
)
from ansible.module_utils.ollama_ramdisk.residency_diff import populate_with_diff

ARGUMENT_SPEC: dict[str, Any] = {
    "source": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "models": {"type": "list", "elements": "str", "default": []},
    "cold_models": {"type": "list", "elements": "str", "default": []},
    "verify": {"type": "bool", "default": False},
    "prune": {"type": "bool", "default": False},
    "owner": {"type": "str"},
    "jobs": {"type": "int"},
    "fallback_link": {"type": "bool", "default": False},
    "lock_timeout": {"type": "float", "default": LOCK_TIMEOUT},
}


def _options(params: Mapping[str, Any], dry_run: bool) -> PopulateOptions:
    return PopulateOptions(
        source=Path(params["source"]),
        dest=Path(params["dest"]),
        models=params["models"],
        cold=params["cold_models"],
        verify=params["verify"],
        prune=params["prune"],
        dry_run=dry_run,
        owner=params["owner"],
        jobs=params["jobs"],
        fallback_link=params["fallback_link"],
        lock_timeout=params["lock_timeout"],
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    outcome = call_core(
        module,
        lambda reporter: populate_with_diff(
            _options(module.params, module.check_mode), reporter, diff=module._diff
        ),
        module.params["dest"],
    )
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
