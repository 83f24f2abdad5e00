#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: seed a fleet mirror with models of a disk store."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_ramdisk_push
short_description: Push models of an Ollama disk store to a fleet's mirror
description:
  - Pushes each of O(models), which O(source) must hold whole, to O(mirror)
    as C(MIRROR/namespace/model:tag), the name M(ollama_ramdisk_pull) asks
    for, by the host's own Ollama (a private C(ollama serve) on O(source)).
  - The push name is a manifest copy, removed afterwards; the store ends as it
    was. Blobs the mirror has are not sent again.
  - Only models of C(registry.ollama.ai) are pushed (the mirror stands in for
    that registry); others are returned in RV(skipped).
  - A model the mirror has with the same blobs is not pushed again.
options:
  source:
    description:
      - The disk store holding the models.
    type: path
    required: true
  models:
    description:
      - Models to push.
    type: list
    elements: str
    required: true
  mirror:
    description:
      - C(host:port) of the OCI registry.
    type: str
    required: true
  insecure:
    description:
      - Speak plain HTTP to O(mirror).
    type: bool
    default: false
  ca_file:
    description:
      - CA bundle (on the host) of O(mirror)'s certificate.
    type: path
  ollama_binary:
    description:
      - The host's C(ollama) binary; default the first on C(PATH).
    type: path
attributes:
  check_mode:
    support: full
    description: Nothing is pushed; RV(pushed) lists what would be.
  diff_mode:
    support: none
    description: No diff is returned; RV(pushed) names each model pushed.
seealso:
  - module: ollama_ramdisk_pull
author:
  - ollama-ramdisk maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Seed the mirror from this host's disk store
  ollama_ramdisk_push:
    source: /usr/share/ollama/.ollama/models
    models: [llama3.1:8b]
    mirror: mirror.example:5000
    insecure: true
"""

RETURN = r"""
pushed:
  description: Models pushed (in check mode, those that would be).
  returned: success
  type: list
  elements: str
present:
  description: Models the mirror had already, with the same blobs.
  returned: success
  type: list
  elements: str
skipped:
  description: Models not of C(registry.ollama.ai), not pushed.
  returned: success
  type: list
  elements: str
mirror:
  description: The mirror pushed to.
  returned: success
  type: str
"""

from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ollama_ramdisk.errors import InvalidOption
from ansible.module_utils.ollama_ramdisk.mirror_push import PushOptions, push
from ansible.module_utils.ollama_ramdisk.module_glue import call_core
from ansible.module_utils.ollama_ramdisk.registry import parse_mirror

ARGUMENT_SPEC: dict[str, Any] = {
    "source": {"type": "path", "required": True},
    "models": {"type": "list", "elements": "str", "required": True},
    "mirror": {"type": "str", "required": True},
    "insecure": {"type": "bool", "default": False},
    "ca_file": {"type": "path"},
    "ollama_binary": {"type": "path"},
}


def _push(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    mirror = parse_mirror(params["mirror"], params["insecure"], params["ca_file"])
    if mirror is None:
        raise InvalidOption("mirror: the registry to push to is required")
    options = PushOptions(Path(params["source"]), params["models"], mirror, params["ollama_binary"])
    return push(options, dry_run=check_mode)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    outcome = call_core(
        module, lambda _reporter: _push(module.params, module.check_mode), module.params["source"]
    )
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
