"""What a registry says of a model before it is pulled: its manifest, so that
the bytes to fetch are known and a model that cannot be pulled fails the host
before anything changes.

A model is pulled from the host in its name (``registry.ollama.ai`` for most),
or, with a fleet mirror, from ``MIRROR/namespace/model:tag``: any OCI
registry serves Ollama's manifests and blobs (Docker's distribution, zot,
Harbor). Only models of the default host go through the mirror; a model of
another host keeps its own (the mirror has one namespace level, so
``hf.co/user/repo`` and ``user/repo`` would clash there).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .bounded_http import Answer, TransportError, request
from .errors import InvalidOption, MalformedManifest, OperationFailed
from .names import DEFAULT_HOST, ModelName, parse_name
from .store import MAX_MANIFEST_BYTES, Manifest, parse_manifest

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)
REQUEST_SECONDS = 30.0

_MIRROR = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]{1,5})?\Z|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?\Z"
)


class PullFailed(OperationFailed):
    """A model cannot be pulled: the registry, the model and the reason are named."""


class ManifestUnknown(PullFailed):
    """The registry answered that it has no such model or tag."""


@dataclass(frozen=True)
class Mirror:
    """A fleet's registry: ``host:port``, plain HTTP when ``insecure``."""

    address: str
    insecure: bool = False
    ca_file: Path | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.insecure else "https"


def parse_mirror(
    address: str | None, insecure: bool = False, ca_file: Path | None = None
) -> Mirror | None:
    """``host[:port]`` -> Mirror; None when no mirror is set."""
    text = (address or "").strip()
    if not text:
        if insecure or ca_file:
            raise InvalidOption("registry mirror: insecure and CA file need a mirror address")
        return None
    if not _MIRROR.match(text) or (ca_file is not None and insecure):
        reason = (
            "a CA file is for HTTPS; an insecure mirror speaks plain HTTP"
            if _MIRROR.match(text)
            else "give host or host:port, no scheme or path"
        )
        raise InvalidOption(f"registry mirror: {text!r}: {reason}")
    if ca_file is not None and not Path(ca_file).is_file():
        raise InvalidOption(f"registry CA file: {ca_file} is not a file")
    # The name Ollama stores the mirror's copy under must be a valid model host.
    parse_name(f"{text}/library/probe:latest")
    return Mirror(text, insecure, Path(ca_file) if ca_file else None)


@dataclass(frozen=True)
class Origin:
    """Where one model is pulled from and under which name Ollama pulls it."""

    wanted: ModelName
    pull_name: ModelName
    scheme: str
    ca_file: Path | None

    @property
    def registry(self) -> str:
        return self.pull_name.host

    @property
    def via_mirror(self) -> bool:
        return self.pull_name != self.wanted

    @property
    def manifest_url(self) -> str:
        path = "/".join(
            urllib.parse.quote(part, safe="")
            for part in (self.pull_name.namespace, self.pull_name.model)
        )
        tag = urllib.parse.quote(self.pull_name.tag, safe="")
        return f"{self.scheme}://{self.registry}/v2/{path}/manifests/{tag}"


def origin_of(name: ModelName, mirror: Mirror | None) -> Origin:
    if mirror is None or name.host != DEFAULT_HOST:
        return Origin(name, name, "https", None)
    mirrored = ModelName(
        host=mirror.address, namespace=name.namespace, model=name.model, tag=name.tag
    )
    return Origin(name, mirrored, mirror.scheme, mirror.ca_file)


def fetch_manifest(origin: Origin, action: str = "pulled from") -> Manifest:
    """The registry's manifest of the model; PullFailed naming the model, the
    registry and the reason when it cannot be read, ManifestUnknown (one) when
    the registry has no such model or tag."""
    answer = _get(origin, origin.manifest_url, {"Accept": MANIFEST_TYPES}, action)
    if answer.status == 401:
        token = _anonymous_token(origin, answer.header("www-authenticate"), action)
        answer = _get(
            origin,
            origin.manifest_url,
            {"Accept": MANIFEST_TYPES, "Authorization": f"Bearer {token}"},
            action,
        )
    if answer.status == 404:
        said = f"the registry has no such model or tag ({_registry_errors(answer)})"
        raise ManifestUnknown(str(pull_failed(origin, said, action)))
    if answer.status != 200:
        raise pull_failed(origin, f"HTTP {answer.status} ({_registry_errors(answer)})", action)
    try:
        return parse_manifest(origin.wanted, Path(origin.manifest_url), answer.body)
    except MalformedManifest as error:
        raise pull_failed(origin, f"its manifest is not usable: {error}", action) from None


def _get(origin: Origin, url: str, headers: dict[str, str], action: str) -> Answer:
    try:
        return request(
            url,
            headers=headers,
            seconds=REQUEST_SECONDS,
            max_bytes=MAX_MANIFEST_BYTES,
            ca_file=origin.ca_file,
        )
    except TransportError as error:
        raise pull_failed(origin, f"the registry cannot be reached: {error}", action) from None


def pull_failed(origin: Origin, reason: str, action: str = "pulled from") -> PullFailed:
    """The failure of one model's transfer, naming the model, the registry and why."""
    via = f" (mirror of {origin.wanted.host})" if origin.via_mirror else ""
    return PullFailed(
        f"model {origin.wanted.short} cannot be {action} {origin.registry}{via}: {reason}"
    )


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def _anonymous_token(origin: Origin, challenge: str, action: str) -> str:
    """The anonymous pull token a ``Bearer`` challenge offers (Harbor, zot, Docker Hub)."""
    scheme, _sep, rest = challenge.partition(" ")
    fields = dict(_CHALLENGE.findall(rest))
    if scheme.lower() != "bearer" or "realm" not in fields:
        wanted = challenge or "no challenge"
        raise pull_failed(origin, f"the registry wants credentials ({wanted})", action)
    query = {key: fields[key] for key in ("service", "scope") if key in fields}
    realm = fields["realm"]
    url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
    answer = _get(origin, url, {}, action)
    try:
        document = json.loads(answer.body) if answer.status == 200 else {}
        token = document.get("token") or document.get("access_token")
    except (ValueError, RecursionError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        said = f"no anonymous pull token from {realm} (HTTP {answer.status})"
        raise pull_failed(origin, said, action)
    return token


def _registry_errors(answer: Answer) -> str:
    """The OCI error codes and messages a registry sent, else the status line."""
    try:
        errors = json.loads(answer.body).get("errors")
        said = [f"{entry.get('code')}: {entry.get('message')}" for entry in errors]
    except (ValueError, RecursionError, AttributeError, TypeError):
        said = []
    text = "; ".join(said) or answer.body[:200].decode("utf-8", "replace").strip()
    return text or f"HTTP {answer.status}"
