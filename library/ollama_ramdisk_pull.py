#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: make models present in the disk store, pulling what it lacks."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_ramdisk_pull
short_description: Pull the models an Ollama disk store lacks, from a fleet mirror or their registry
description:
  - Finds the models of O(models) that O(source) lacks (no manifest, or a blob
    missing or of the wrong size) and reads each one's manifest from its
    registry, or from O(mirror), before anything is fetched. A model that
    cannot be pulled (no such tag, registry unreachable) or a set that would
    leave less than O(reserve) free fails the module, naming the model, the
    registry and the reason.
  - Then the host's own Ollama pulls each one straight into O(source), by a
    private C(ollama serve) on a free loopback port whose C(OLLAMA_MODELS) is
    O(source), run as the store's owner, which never prunes. The service
    Ollama and its RAM disk are not touched.
  - Ollama checks each blob's sha256 as it lands; each pulled model is hashed
    once more before it counts as present.
  - With O(mirror), models of C(registry.ollama.ai) are pulled as
    C(MIRROR/namespace/model:tag), named as asked (C(ollama cp), a manifest
    copy) and the mirror's name removed.
options:
  source:
    description:
      - The disk store (an C(OLLAMA_MODELS) directory), which is written.
    type: path
    required: true
  models:
    description:
      - Models the store must have (C([host/][namespace/]model[:tag])).
    type: list
    elements: str
    required: true
  mirror:
    description:
      - C(host:port) of an OCI registry that serves the fleet's models; empty
        pulls from each model's own registry.
    type: str
    default: ""
  insecure:
    description:
      - Speak plain HTTP to O(mirror).
    type: bool
    default: false
  ca_file:
    description:
      - CA bundle (on the host) of O(mirror)'s certificate.
    type: path
  reserve:
    description:
      - Space that must stay free on O(source) after the pull, a SIZE (bytes,
        or a number with k, m, g or t).
    type: str
    default: 1g
  owner:
    description:
      - C(user[:group]) the pull runs as where root controls O(source); where
        another user controls it, that user.
    type: str
  ollama_binary:
    description:
      - The host's C(ollama) binary; default the first on C(PATH) or in the
        installer's places.
    type: path
attributes:
  check_mode:
    support: full
    description:
      - Asks the registry for each missing model's manifest and returns in
        RV(pulled) what would be pulled and its bytes; fetches nothing.
  diff_mode:
    support: none
    description: No diff is returned; RV(pulled) names each model pulled and its bytes.
seealso:
  - module: ollama_ramdisk_plan
author:
  - ollama-ramdisk maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Pull what the disk store lacks from the fleet's mirror
  ollama_ramdisk_pull:
    source: /usr/share/ollama/.ollama/models
    models: [llama3.1:8b, qwen2.5:7b]
    mirror: mirror.example:5000
    insecure: true
    owner: ollama:ollama
"""

RETURN = r"""
pulled:
  description:
    - Each model pulled (in check mode, each that would be) with C(name),
      C(registry), C(bytes) (the model's blobs) and C(fetch_bytes) (those the
      store lacked); after a real pull also C(fetched_bytes), C(seconds) and
      C(rate).
  returned: success
  type: list
  elements: dict
present:
  description: Models the store already had whole.
  returned: success
  type: list
  elements: str
bytes_fetched:
  description: Bytes the pulls fetched.
  returned: success
  type: int
seconds:
  description: Time the module took.
  returned: success
  type: float
dry_run:
  description: True in check mode.
  returned: success
  type: bool
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ollama_ramdisk.defaults import WRITEBACK_RESERVE
from ansible.module_utils.ollama_ramdisk.module_glue import call_core
from ansible.module_utils.ollama_ramdisk.pull import PullOptions, pull
from ansible.module_utils.ollama_ramdisk.registry import parse_mirror

ARGUMENT_SPEC: dict[str, Any] = {
    "source": {"type": "path", "required": True},
    "models": {"type": "list", "elements": "str", "required": True},
    "mirror": {"type": "str", "default": ""},
    "insecure": {"type": "bool", "default": False},
    "ca_file": {"type": "path"},
    "reserve": {"type": "str", "default": WRITEBACK_RESERVE},
    "owner": {"type": "str"},
    "ollama_binary": {"type": "path"},
}


def options_from(params: Mapping[str, Any], check_mode: bool) -> PullOptions:
    return PullOptions(
        source=Path(params["source"]),
        models=params["models"],
        mirror=parse_mirror(params["mirror"], params["insecure"], params["ca_file"]),
        reserve=params["reserve"],
        dry_run=check_mode,
        owner=params["owner"],
        ollama=params["ollama_binary"],
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    outcome = call_core(
        module,
        lambda reporter: pull(options_from(module.params, module.check_mode), reporter).to_dict(),
        module.params["source"],
    )
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
