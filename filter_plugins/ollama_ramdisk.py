"""Jinja filters over the project's core, so that the roles accept and refuse
values by the rules the command line uses: one SIZE grammar, one model-name
parser (module_utils/ollama_ramdisk)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

# The core is a plain package beside this directory: controller-side plugins
# cannot import it through ansible.module_utils as modules do.
_CORE_PARENT = str(Path(__file__).resolve().parents[1] / "module_utils")
if _CORE_PARENT not in sys.path:
    sys.path.append(_CORE_PARENT)

from ansible.errors import AnsibleFilterError  # noqa: E402
from ollama_ramdisk.errors import InvalidInput  # noqa: E402
from ollama_ramdisk.names import parse_name  # noqa: E402
from ollama_ramdisk.sizes import parse_size  # noqa: E402
from ollama_ramdisk.tmpfs_options import (  # noqa: E402
    Wanted,
    fstab_options,
    huge_setting,
    mount_change,
)


def size_problem(value: Any, option: str = "size") -> str:
    """An empty string when ``value`` is a SIZE the core takes, else the core's reason."""
    try:
        parse_size(value, option)
    except InvalidInput as error:
        return str(error)
    return ""


def size_bytes(value: Any, option: str = "size") -> int:
    """The bytes of a SIZE, as the core reads it."""
    try:
        return parse_size(value, option)
    except InvalidInput as error:
        raise AnsibleFilterError(str(error)) from None


def model_name_problem(value: Any) -> str:
    """An empty string when ``value`` is a model name Ollama takes, else why not."""
    try:
        parse_name(value)
    except InvalidInput as error:
        return str(error)
    return ""


def model_key(value: Any) -> str:
    """host/namespace/model:tag in lower case: how Ollama tells two names apart."""
    try:
        host, namespace, model, tag = parse_name(value).folded()
    except InvalidInput as error:
        raise AnsibleFilterError(str(error)) from None
    return f"{host}/{namespace}/{model}:{tag}"


def tmpfs_options(wanted: dict[str, Any]) -> list[str]:
    """The RAM disk's fstab (and first mount) options."""
    return fstab_options(Wanted.from_mapping(wanted))


def tmpfs_change(wanted: dict[str, Any], live_options: str, live_size: Any) -> dict[str, Any]:
    """What a mounted RAM disk needs: grow, remount (and its options), pending."""
    return mount_change(Wanted.from_mapping(wanted), str(live_options), int(live_size)).to_dict()


class FilterModule:
    """The filters of the project: SIZE values, model names, tmpfs options."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "ollama_ramdisk_size_problem": size_problem,
            "ollama_ramdisk_size_bytes": size_bytes,
            "ollama_ramdisk_model_name_problem": model_name_problem,
            "ollama_ramdisk_model_key": model_key,
            "ollama_ramdisk_huge_setting": huge_setting,
            "ollama_ramdisk_tmpfs_options": tmpfs_options,
            "ollama_ramdisk_tmpfs_change": tmpfs_change,
        }
