#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: check that every blob of an Ollama store hashes to its name."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_ramdisk_verify
short_description: Check the integrity of an Ollama model store, optionally repairing it
description:
  - Hashes every blob of the named models (all models in O(store) if none are
    named) and compares the sha256 with the blob's name, which is its digest.
  - Fails when a blob is corrupt or missing, or a named model has no
    manifest, unless O(repair) restored it from O(source).
  - Symlinked blobs (cold models) are checked through the link.
options:
  store:
    description:
      - The store to check, for example C(/mnt/ollama/models) on the RAM disk.
    type: path
    required: true
  models:
    description:
      - Models to check (C([host/][namespace/]model[:tag])); default all models in O(store).
    type: list
    elements: str
    default: []
  repair:
    description:
      - Replace each corrupt or missing blob with a verified copy from O(source),
        atomically.
    type: bool
    default: false
  source:
    description:
      - The disk store to repair from. Required with O(repair).
    type: path
  jobs:
    description:
      - Blobs hashed in parallel.
    type: int
    default: 1
attributes:
  check_mode:
    support: full
    description:
      - Nothing is repaired; the blobs that would be repaired are returned in
        RV(would_repair) and the module reports a change instead of failing.
  diff_mode:
    support: none
    description: No diff is returned; RV(repaired) names each blob copied again.
seealso:
  - module: ollama_ramdisk_populate
author:
  - ollama-ramdisk maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Check every model on the RAM disk
  ollama_ramdisk_verify:
    store: /mnt/ollama/models
  register: ramdisk_check

- name: Check two models and repair them from the disk store
  ollama_ramdisk_verify:
    store: /mnt/ollama/models
    models: [llama3.1:70b, mistral:7b]
    repair: true
    source: /usr/share/ollama/.ollama/models
    jobs: 4
  async: 3600
  poll: 10
"""

RETURN = r"""
ok:
  description: True when nothing is corrupt or missing (after any repair).
  returned: always
  type: bool
checked:
  description: Blobs hashed.
  returned: always
  type: int
  sample: 12
bytes:
  description: Bytes hashed.
  returned: always
  type: int
corrupt:
  description: Blobs whose content does not hash to their name (C(blobs/sha256-<hex>)).
  returned: always
  type: list
  elements: str
missing:
  description: Blobs, or manifests of named models, that are absent.
  returned: always
  type: list
  elements: str
repaired:
  description: Blobs replaced with a verified copy from O(source).
  returned: always
  type: list
  elements: str
would_repair:
  description: In check mode with O(repair), what a real run would try to repair.
  returned: check mode with O(repair)
  type: list
  elements: str
models:
  description: The models checked, fully qualified.
  returned: always
  type: list
  elements: str
"""

from collections.abc import Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ollama_ramdisk.defaults import VERIFY_JOBS
from ansible.module_utils.ollama_ramdisk.module_glue import call_core
from ansible.module_utils.ollama_ramdisk.progress import Reporter
from ansible.module_utils.ollama_ramdisk.store import Store
from ansible.module_utils.ollama_ramdisk.verify import VerifyResult, verify_store

ARGUMENT_SPEC: dict[str, Any] = {
    "store": {"type": "path", "required": True},
    "models": {"type": "list", "elements": "str", "default": []},
    "repair": {"type": "bool", "default": False},
    "source": {"type": "path"},
    "jobs": {"type": "int", "default": VERIFY_JOBS},
}


def run_verify(params: Mapping[str, Any], check_mode: bool, reporter: Reporter) -> VerifyResult:
    store = Store(params["store"])
    store.require_directory("store")
    repair_source = None
    if params["repair"]:
        source = Store(params["source"])
        source.require_directory("source")
        # Check mode reads the source's presence but never writes a blob.
        repair_source = None if check_mode else source
    return verify_store(
        store,
        models=params["models"],
        repair_source=repair_source,
        jobs=params["jobs"],
        reporter=reporter,
    )


def failure_message(outcome: Mapping[str, Any], store: str) -> str:
    problems = [f"corrupt: {path}" for path in outcome["corrupt"]]
    problems += [f"missing: {path}" for path in outcome["missing"]]
    return f"{store}: {len(problems)} problem(s) remain: " + "; ".join(problems)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("repair", True, ("source",))],
        supports_check_mode=True,
    )
    result = call_core(
        module,
        lambda reporter: run_verify(module.params, module.check_mode, reporter),
        module.params["store"],
    )
    outcome = result.to_dict()
    if module.check_mode and module.params["repair"]:
        outcome["would_repair"] = outcome["corrupt"] + outcome["missing"]
        module.exit_json(changed=bool(outcome["would_repair"]), **outcome)
    if not outcome["ok"]:
        module.fail_json(msg=failure_message(outcome, module.params["store"]), **outcome)
    module.exit_json(changed=bool(outcome["repaired"]), **outcome)


if __name__ == "__main__":
    main()
