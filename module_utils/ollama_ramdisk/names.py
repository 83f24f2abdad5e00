"""Ollama model references, parsed by Ollama's own rules.

A reference is ``[scheme://][host/][namespace/]model[:tag]``. Every part is
checked before any path is built from it, so that a name can never point
outside ``manifests/`` (``../x``, ``a/b/c/d``, shell metacharacters...).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputProblems, InvalidName

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

# Ollama's limits per part (types/model/name.go).
MAX_HOST_LENGTH = 350
MAX_PART_LENGTH = 80

_ASCII_ALNUM_UNDERSCORE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)


@dataclass(frozen=True)
class ModelName:
    """A fully qualified model reference, parts in the case the operator wrote."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def qualified(self) -> str:
        """The name with every part spelled out: host/namespace/model:tag."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def short(self) -> str:
        """The name as ``ollama list`` shows it (defaults left out)."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        return self.qualified

    @property
    def manifest_relpath(self) -> str:
        """The manifest's path relative to the store root."""
        return f"manifests/{self.host}/{self.namespace}/{self.model}/{self.tag}"

    def folded(self) -> tuple[str, str, str, str]:
        """A case-insensitive key: Ollama compares names this way in places."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def __str__(self) -> str:
        return self.qualified


def _part_is_valid(kind: str, text: str) -> bool:
    limit = MAX_HOST_LENGTH if kind == "host" else MAX_PART_LENGTH
    if not 1 <= len(text) <= limit or text[0] not in _ASCII_ALNUM_UNDERSCORE:
        return False
    for char in text[1:]:
        if char in _ASCII_ALNUM_UNDERSCORE or char in "_-":
            continue
        if char == "." and kind != "namespace":
            continue
        if char == ":" and kind == "host":
            continue
        return False
    return True


def _split(reference: str) -> dict[str, str]:
    """Split like Ollama: tag after the last ':' (if after the last '/'), then
    model, namespace and whatever remains as the host."""
    parts: dict[str, str] = {}
    rest = reference
    if rest.rfind(":") > rest.rfind("/"):
        rest, _sep, parts["tag"] = rest.rpartition(":")
    if "/" not in rest:
        parts["model"] = rest
        return parts
    rest, _sep, parts["model"] = rest.rpartition("/")
    if "/" not in rest:
        parts["namespace"] = rest
        return parts
    rest, _sep, parts["namespace"] = rest.rpartition("/")
    scheme_end = rest.find("://")
    parts["host"] = rest[scheme_end + 3 :] if scheme_end >= 0 else rest
    return parts


def parse_name(reference: object) -> ModelName:
    """Parse a model reference, filling in Ollama's defaults.

    Raises InvalidName naming the reference and the part at fault.
    """
    if not isinstance(reference, str):
        raise InvalidName(f"model name must be a string, not {type(reference).__name__}")
    if reference == "":
        raise InvalidName("model name is empty")
    parts = _split(reference)
    for kind in ("host", "namespace", "model", "tag"):
        if kind in parts and not _part_is_valid(kind, parts[kind]):
            raise InvalidName(_explain(reference, kind, parts[kind]))
    return ModelName(
        host=parts.get("host", DEFAULT_HOST),
        namespace=parts.get("namespace", DEFAULT_NAMESPACE),
        model=parts["model"],
        tag=parts.get("tag", DEFAULT_TAG),
    )


def _explain(reference: str, kind: str, text: str) -> str:
    limit = MAX_HOST_LENGTH if kind == "host" else MAX_PART_LENGTH
    if text == "":
        reason = "is empty"
    elif len(text) > limit:
        reason = f"is {len(text)} characters long (at most {limit})"
    elif text[0] not in _ASCII_ALNUM_UNDERSCORE:
        reason = "must start with a letter, a digit or '_'"
    else:
        allowed = "letters, digits, '_', '-'"
        if kind != "namespace":
            allowed += ", '.'"
        if kind == "host":
            allowed += ", ':'"
        reason = f"may hold only {allowed}"
    return f"invalid model name {reference!r}: the {kind} part {text!r} {reason}"


def parse_names(references: object) -> list[ModelName]:
    """Parse a list of references, reporting every bad one together."""
    if not isinstance(references, (list, tuple)):
        raise InvalidName(f"models must be a list of names, not {type(references).__name__}")
    names: list[ModelName] = []
    problems: list[InvalidName] = []
    for reference in references:
        try:
            names.append(parse_name(reference))
        except InvalidName as error:
            problems.append(error)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputProblems(problems)
    return names
