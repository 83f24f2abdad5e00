"""Jinja filters over the project's core, so that the roles accept and refuse
values by the rules the command line uses: one SIZE grammar, one model-name
parser (module_utils/ollama_ramdisk)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

# -- core on sys.path: checkout only --
# The core is a plain package beside this directory: controller-side plugins
# cannot import it through ansible.module_utils as modules do. The collection
# (scripts/build-collection.py) imports it from its module_utils instead.
_CORE_PARENT = str(Path(__file__).resolve().parents[1] / "module_utils")
if _CORE_PARENT not in sys.path:
    sys.path.append(_CORE_PARENT)
# --

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

T = TypeVar("T")


def _problem(check: Callable[..., Any], *args: Any) -> str:
    """An empty string when the core's ``check`` takes the value, else its reason."""
    try:
        check(*args)
    except InvalidInput as error:
        return str(error)
    return ""


def _read(parse: Callable[..., T], *args: Any) -> T:
    """What the core's ``parse`` reads; its refusal becomes the filter's error."""
    try:
        return parse(*args)
    except InvalidInput as error:
        raise AnsibleFilterError(str(error)) from None


def size_problem(value: Any, option: str = "size") -> str:
    """Why ``value`` is not a SIZE the core takes ("" when it is)."""
    return _problem(parse_size, value, option)


def size_bytes(value: Any, option: str = "size") -> int:
    """The bytes of a SIZE, as the core reads it."""
    return _read(parse_size, value, option)


def model_name_problem(value: Any) -> str:
    """Why ``value`` is not a model name Ollama takes ("" when it is)."""
    return _problem(parse_name, value)


def model_key(value: Any) -> str:
    """host/namespace/model:tag in lower case: how Ollama tells two names apart."""
    host, namespace, model, tag = _read(parse_name, value).folded()
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
