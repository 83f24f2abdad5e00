#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: size a RAM disk for a set of Ollama models (read only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_ramdisk_plan
short_description: Size a tmpfs RAM disk for a set of Ollama models
description:
  - Reads the manifests of the hot and cold models in an Ollama model store,
    counts every distinct blob of the hot models once (models share blobs),
    rounds each file up to a page as tmpfs allocates it and multiplies by the
    headroom to give the RAM disk's size.
  - Fails, before anything is changed, when a model name is invalid, a model
    or one of its blobs is missing from the store, a manifest is malformed, or
    the RAM disk would not fit in the host's memory minus the reserve.
  - Every problem with the model set is reported at once.
  - Changes nothing; always safe in check mode.
version_added: "0.1.0"
author:
  - ollama-ramdisk maintainers (!UNKNOWN)
options:
  source:
    description:
      - The Ollama model store to read (an C(OLLAMA_MODELS) directory holding
        C(manifests/) and C(blobs/)).
    type: path
    required: true
  models:
    description:
      - Hot models, to be copied into RAM. Names as Ollama takes them,
        C([host/][namespace/]model[:tag]); missing parts default to
        C(registry.ollama.ai), C(library) and C(latest).
    type: list
    elements: str
    default: []
  cold_models:
    description:
      - Cold models, visible to Ollama from the RAM disk but with blobs linked
        to the disk store. They are validated but not counted in the size.
    type: list
    elements: str
    default: []
  headroom:
    description:
      - The RAM disk's size is the hot models' page-rounded bytes times this
        factor, rounded up to a whole MiB. At least 1.0.
    type: float
    default: 1.2
  reserve:
    description:
      - Memory that must stay free for the OS, Ollama and models loaded
        without memory mapping. A SIZE (bytes, or a number with k, m, g or t).
      - Default is the larger of 4 GiB and 10% of the host's memory.
    type: str
  size:
    description:
      - A SIZE that overrides the computed size (rounded up to a MiB).
      - When it is below what the hot models need, the module warns and
        returns RV(plan.holds_set=false).
    type: str
  mem_total:
    description:
      - The memory to plan against, as a SIZE. Default is the host's memory,
        or its cgroup's memory limit when that is lower.
      - Useful to plan for another host class than the one the module runs on.
    type: str
  gpus:
    description:
      - Whether the host has GPUs, which decides whether Ollama's loads map the
        weights or copy them (a copy adds the largest hot model's weights to
        what must fit). Default is to look for NVIDIA and AMD GPUs.
    type: bool
  unit:
    description:
      - A systemd unit (C(ollama.service)) whose C(MemoryMax=) and
        C(MemoryHigh=), and those of its slices, must also hold the RAM disk
        plus a load, since the refill charges the RAM disk's pages to that unit.
    type: str
  unit_memory_max:
    description:
      - The unit's C(MemoryMax=) as a SIZE, instead of asking systemd (to plan
        for another host).
    type: str
  unit_memory_high:
    description:
      - The unit's C(MemoryHigh=) as a SIZE, instead of asking systemd.
    type: str
attributes:
  check_mode:
    support: full
    description: The module never changes anything; check mode gives the same plan.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
seealso:
  - module: ollama_ramdisk_populate
  - module: ollama_ramdisk_verify
"""

EXAMPLES = r"""
- name: Plan the RAM disk for two hot models and one cold one
  ollama_ramdisk_plan:
    source: /usr/share/ollama/.ollama/models
    models:
      - llama3.1:70b
      - qwen2.5-coder:32b
    cold_models:
      - hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M
    headroom: 1.2
  register: plan_result

- name: Show the fstab size
  ansible.builtin.debug:
    msg: "tmpfs size={{ plan_result.plan.size }} for {{ plan_result.plan.bytes }} bytes"

- name: Plan with a fixed reserve against a 512 GiB host class
  ollama_ramdisk_plan:
    source: /srv/ollama/models
    models: [deepseek-r1:671b]
    reserve: 48g
    mem_total: 512g
"""

RETURN = r"""
short_of_set:
  description:
    - With a forced O(size) below what the hot models need, why (also given as a warning).
    - V(null) when the RAM disk holds the hot models.
  returned: success
  type: str
  sample: the forced size 1g is below the 4.7 GiB the hot models need ...
plan:
  description: The sizing plan (the same keys as C(ollama-ramdisk plan --json)).
  returned: success, and on failure when the set does not fit
  type: dict
  contains:
    models:
      description: The hot models, in the order given.
      type: list
      elements: dict
      contains:
        name:
          description: Fully qualified name, C(host/namespace/model:tag).
          type: str
          sample: registry.ollama.ai/library/llama3.1:70b
        manifest:
          description: The manifest's path relative to the store.
          type: str
          sample: manifests/registry.ollama.ai/library/llama3.1/70b
        blobs:
          description: Digests of the model's config and layers.
          type: list
          elements: str
        bytes:
          description: The model's blobs and manifest, in bytes (shared blobs included).
          type: int
    cold_models:
      description: Fully qualified names of the cold models.
      type: list
      elements: str
    blob_count:
      description: Distinct blobs of the hot models.
      type: int
      sample: 7
    bytes:
      description: Bytes of the distinct blobs and the manifests of the hot models.
      type: int
      sample: 42520399008
    tmpfs_bytes:
      description: The same, each file rounded up to 4096 bytes.
      type: int
    headroom:
      description: The headroom factor used.
      type: float
      sample: 1.2
    size_bytes:
      description: The RAM disk's size in bytes, a whole number of MiB.
      type: int
    size:
      description: The size in fstab form (a number with k, m or g).
      type: str
      sample: 48g
    size_override:
      description: Whether O(size) fixed the size.
      type: bool
    holds_set:
      description: Whether the size holds every hot model (false only with a small O(size)).
      type: bool
    mem_total:
      description: The memory planned against, in bytes.
      type: int
    reserve:
      description: The memory kept free, in bytes.
      type: int
    gpus:
      description: Whether the plan is for a host with GPUs (O(gpus), or found).
      type: bool
    mmap:
      description: Whether Ollama's loads of the largest hot model will map its weights.
      type: bool
    mmap_reason:
      description: Why, in words (no GPU; or the memory left available with the RAM disk full).
      type: str
    load_copy_bytes:
      description: What a load adds beside the RAM disk when it copies the weights (else 0).
      type: int
    limits:
      description:
        - Every ceiling the RAM disk plus a load must fit under, C(memory) first, then the unit's
          and its slices' C(MemoryMax)/C(MemoryHigh).
        - Each with C(source), C(bytes), C(needed) (with the reserve for C(memory)) and C(fits).
      type: list
      elements: dict
    limit_source:
      description: The tightest limit (least room left, or most over).
      type: str
      sample: memory
    fits:
      description: Whether every limit holds what it needs.
      type: bool
      sample: true
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ollama_ramdisk.defaults import HEADROOM
from ansible.module_utils.ollama_ramdisk.limits import service_limits
from ansible.module_utils.ollama_ramdisk.module_glue import call_core
from ansible.module_utils.ollama_ramdisk.plan import Plan, build_plan, resolve_model_set
from ansible.module_utils.ollama_ramdisk.sizes import parse_size
from ansible.module_utils.ollama_ramdisk.store import Store

ARGUMENT_SPEC: dict[str, Any] = {
    "source": {"type": "path", "required": True},
    "models": {"type": "list", "elements": "str", "default": []},
    "cold_models": {"type": "list", "elements": "str", "default": []},
    "headroom": {"type": "float", "default": HEADROOM},
    "reserve": {"type": "str"},
    "size": {"type": "str"},
    "mem_total": {"type": "str"},
    "gpus": {"type": "bool"},
    "unit": {"type": "str"},
    "unit_memory_max": {"type": "str"},
    "unit_memory_high": {"type": "str"},
}


def _optional_size(value: str | None, option: str) -> int | None:
    return None if value is None else parse_size(value, option)


def make_plan(params: dict[str, Any]) -> Plan:
    """Resolve the model set in the source store and size its RAM disk."""
    store = Store(params["source"])
    store.require_directory("source")
    model_set = resolve_model_set(store, params["models"], params["cold_models"])
    return build_plan(
        model_set,
        headroom=params["headroom"],
        reserve=_optional_size(params["reserve"], "reserve"),
        mem_total=_optional_size(params["mem_total"], "mem_total"),
        size_override=_optional_size(params["size"], "size"),
        gpus=params["gpus"],
        unit_limits=service_limits(
            params["unit"],
            memory_max=_optional_size(params["unit_memory_max"], "unit_memory_max"),
            memory_high=_optional_size(params["unit_memory_high"], "unit_memory_high"),
        ),
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    plan = call_core(module, lambda _reporter: make_plan(module.params), module.params["source"])
    result = plan.to_dict()
    if not plan.fits:
        module.fail_json(msg=" ".join(plan.refusals()), plan=result)
    for warning in plan.warnings():
        module.warn(warning)
    short = plan.short_of_set()
    if short is not None:
        module.warn(short)
    module.exit_json(changed=False, plan=result, short_of_set=short)


if __name__ == "__main__":
    main()
