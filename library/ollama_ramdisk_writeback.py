#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: copy models made in the RAM disk back to the disk store."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_ramdisk_writeback
short_description: Write models that exist only in the RAM disk back to the disk store
description:
  - Copies every model whose manifest O(dest) (the RAM disk's store) has and
    O(source) (the disk store) lacks into O(source), the blobs it lacks first,
    the manifest last, as the C(ollama-ramdisk writeback) command does.
  - Nothing in O(dest) is trusted, since any client of Ollama's API writes
    there; no link below it is followed and only O(source) is written.
  - Each model written is recorded in O(source), so that
    M(ollama_ramdisk_populate) keeps it visible after the next boot.
  - Nothing is ever deleted from O(source).
options:
  source:
    description:
      - The disk store, which is written.
    type: path
    required: true
  dest:
    description:
      - The store in the RAM disk, which is only read.
    type: path
    required: true
  verify:
    description:
      - Kept for playbooks that set it. Every blob is hashed while it is copied,
        whatever this says (the RAM disk is written by any API client); a model
        with a blob that does not hash to its name is not written back, and the
        module fails.
    type: bool
    default: true
  owner:
    description:
      - C(user[:group]) given to what is created in O(source).
    type: str
  reserve:
    description:
      - Space that must stay free on O(source), a SIZE (bytes, or a number with
        k, m, g or t); a model that would cross it is not written back.
    type: str
    default: 1g
  lock_timeout:
    description:
      - Seconds to wait for another run holding either store.
    type: float
    default: 600
attributes:
  check_mode:
    support: full
    description: A dry run; RV(written) lists what a real run would write.
  diff_mode:
    support: none
    description: No diff is returned; RV(written) names each model written to O(source).
seealso:
  - module: ollama_ramdisk_populate
author:
  - ollama-ramdisk maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Keep models pulled into RAM before removing the RAM disk
  ollama_ramdisk_writeback:
    source: /usr/share/ollama/.ollama/models
    dest: /mnt/ollama/models
    owner: ollama:ollama
  async: 7200
  poll: 10
"""

RETURN = r"""
written:
  description: Models written back (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: [registry.ollama.ai/library/mine:latest]
copied:
  description: Blobs copied into O(source), as C(blobs/sha256-<hex>).
  returned: success
  type: list
  elements: str
bytes_copied:
  description: Bytes copied.
  returned: success
  type: int
skipped:
  description: Blobs of these models that O(source) already had.
  returned: success
  type: int
refused:
  description:
    - Empty on success. A model that cannot be written back (no room under the
      reserve, a bad blob) fails the module, which names it in C(msg).
  returned: success
  type: list
  elements: str
forgotten:
  description: Always empty here (only the command's C(--forget-removed) drops record entries).
  returned: success
  type: list
  elements: str
seconds:
  description: Time the run took.
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
from ansible.module_utils.ollama_ramdisk.defaults import LOCK_TIMEOUT, WRITEBACK_RESERVE
from ansible.module_utils.ollama_ramdisk.module_glue import call_core
from ansible.module_utils.ollama_ramdisk.writeback import WritebackOptions, writeback

ARGUMENT_SPEC: dict[str, Any] = {
    "source": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "verify": {"type": "bool", "default": True},
    "owner": {"type": "str"},
    "reserve": {"type": "str", "default": WRITEBACK_RESERVE},
    "lock_timeout": {"type": "float", "default": LOCK_TIMEOUT},
}


def options_from(params: Mapping[str, Any], check_mode: bool) -> WritebackOptions:
    return WritebackOptions(
        source=Path(params["source"]),
        dest=Path(params["dest"]),
        verify=params["verify"],
        dry_run=check_mode,
        owner=params["owner"],
        reserve=params["reserve"],
        lock_timeout=params["lock_timeout"],
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    outcome = call_core(
        module,
        lambda reporter: writeback(
            options_from(module.params, module.check_mode), reporter
        ).to_dict(),
        module.params["dest"],
    )
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
