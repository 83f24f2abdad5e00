"""What each Ansible module of the project does around its call into the core:
the core's warnings passed on, and its errors turned into ``fail_json`` with
the exit status the command line gives. The module object is used, never
imported: the core stays free of Ansible."""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

from .errors import EXIT_FAILED, RamdiskError, os_error_text
from .progress import WarningCollector

T = TypeVar("T")


class AnsibleModuleLike(Protocol):
    def warn(self, warning: str) -> None: ...

    def fail_json(self, msg: str, **kwargs: Any) -> Any: ...


def call_core(module: AnsibleModuleLike, work: Callable[[WarningCollector], T], where: object) -> T:
    """``work(reporter)``, its warnings given to ``module``; a failure ends the
    module with ``msg`` and ``exit_code`` (``where`` names an OSError without a path)."""
    reporter = WarningCollector()
    try:
        result = work(reporter)
    except RamdiskError as error:
        pass_on_warnings(module, reporter)
        module.fail_json(msg=str(error), exit_code=error.exit_code)
        raise  # fail_json exits; reached only with a module that does not
    except OSError as error:
        pass_on_warnings(module, reporter)
        module.fail_json(msg=os_error_text(error, where), exit_code=EXIT_FAILED)
        raise
    pass_on_warnings(module, reporter)
    return result


def pass_on_warnings(module: AnsibleModuleLike, reporter: WarningCollector) -> None:
    for message in reporter.warnings:
        module.warn(message)
