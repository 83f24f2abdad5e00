#!/usr/bin/env python3
"""A stand-in for `ollama serve` on the test instances (test fixture only).

The Ollama server cannot be installed on the test instances, so this small
HTTP server plays its part in the API the toolkit and its tests use. Like the
real server it reads OLLAMA_MODELS itself on every request:

    GET  /                 "Ollama is running"
    GET  /api/version      {"version": ...}
    GET  /api/tags         every model whose manifest and blobs it can read
    GET  /api/ps           models loaded through /api/generate
    POST /api/generate     {"model", "keep_alive"}: load (or unload) a model

A model with a missing, unreadable or wrongly sized blob is not listed (the
real server could not load it) and the reason goes to the journal. At start-up
it logs what it serves, and every file in blobs/ that the real server would
prune (not referenced by any manifest, or not named after a digest), so that
tests can read from the journal what Ollama would have seen at that moment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VERSION = "0.0.0-standin"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
FOREVER = 100 * 365 * 86400.0
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def log(message: str) -> None:
    print(f"ollama-standin: {message}", file=sys.stderr, flush=True)


def models_root() -> Path:
    configured = os.environ.get("OLLAMA_MODELS", "").strip()
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


def split_name(name: str) -> tuple[str, str, str, str]:
    """Ollama's parser for [host/][namespace/]model[:tag], with its defaults."""
    rest = name.split("://", 1)[-1]
    tag = "latest"
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = rest.rsplit(":", 1)
    parts = rest.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) > 1 else DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) > 2 else DEFAULT_HOST
    return host, namespace, model, tag


def display_shortest(host: str, namespace: str, model: str, tag: str) -> str:
    """How `ollama list` names a model."""
    if host.lower() == DEFAULT_HOST:
        if namespace.lower() == DEFAULT_NAMESPACE:
            return f"{model}:{tag}"
        return f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def keep_alive_seconds(value: Any) -> float | None:
    """Seconds to keep a model loaded; None: forever; 0: unload."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().strip("\"'")
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if body.isdigit():
            seconds = sign * int(body)
        elif body and not DURATION_PART.sub("", body):
            seconds = sign * sum(float(n) * UNIT_SECONDS[u] for n, u in DURATION_PART.findall(body))
        else:
            # Ollama ignores what it cannot parse and keeps its default.
            seconds = 300.0
    return None if seconds < 0 else seconds


class Catalogue:
    """What the server can load from OLLAMA_MODELS right now."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> tuple[dict[str, dict[str, Any]], dict[str, str], set[str]]:
        """Loadable models by display name, unloadable ones with the reason, referenced blobs."""
        models: dict[str, dict[str, Any]] = {}
        problems: dict[str, str] = {}
        referenced: set[str] = set()
        manifests = self.root / "manifests"
        if not manifests.is_dir():
            return models, problems, referenced
        for path in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
            host, namespace, model, tag = path.relative_to(manifests).parts
            name = display_shortest(host, namespace, model, tag)
            try:
                raw = path.read_bytes()
                manifest = json.loads(raw)
                layers = [manifest["config"], *manifest["layers"]]
                digests = [(str(layer["digest"]), int(layer["size"])) for layer in layers]
            except (OSError, ValueError, KeyError, TypeError) as error:
                problems[name] = f"unreadable manifest {path}: {error}"
                continue
            reason = None
            for digest, size in digests:
                match = DIGEST.match(digest)
                if not match:
                    reason = f"invalid digest {digest}"
                    break
                blob = self.root / "blobs" / f"sha256-{match.group(1).lower()}"
                referenced.add(blob.name)
                try:
                    with blob.open("rb") as handle:
                        actual = os.fstat(handle.fileno()).st_size
                except OSError as error:
                    reason = f"cannot read blob {blob.name}: {error.strerror}"
                    break
                if actual != size:
                    reason = f"blob {blob.name} has {actual} bytes, the manifest says {size}"
                    break
            if reason:
                problems[name] = reason
                continue
            models[name] = {
                "name": name,
                "model": name,
                "modified_at": datetime.fromtimestamp(
                    path.stat().st_mtime, timezone.utc
                ).isoformat(),
                "size": sum(size for _, size in digests),
                "digest": hashlib.sha256(raw).hexdigest(),
                "details": {"format": "gguf"},
            }
        return models, problems, referenced

    def prunable(self, referenced: set[str]) -> list[str]:
        blobs = self.root / "blobs"
        if not blobs.is_dir():
            return []
        return sorted(
            entry.name
            for entry in blobs.iterdir()
            if entry.name not in referenced or not DIGEST.match(entry.name)
        )

    def find(self, requested: str) -> dict[str, Any] | None:
        wanted = display_shortest(*split_name(requested)).lower()
        models, _, _ = self.scan()
        for name, entry in models.items():
            if name.lower() == wanted:
                return entry
        return None


class State:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.loaded: dict[str, tuple[dict[str, Any], float | None]] = {}
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "ollama-standin"
    state: State

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")

    def reply(self, status: HTTPStatus, body: Any) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.reply(HTTPStatus.OK, "Ollama is running")

    def do_GET(self) -> None:
        if self.path == "/":
            self.reply(HTTPStatus.OK, "Ollama is running")
        elif self.path == "/api/version":
            self.reply(HTTPStatus.OK, {"version": VERSION})
        elif self.path == "/api/tags":
            models, problems, _ = self.state.catalogue.scan()
            for name, reason in problems.items():
                log(f"not listing {name}: {reason}")
            self.reply(HTTPStatus.OK, {"models": list(models.values())})
        elif self.path == "/api/ps":
            self.reply(HTTPStatus.OK, {"models": self.running()})
        else:
            self.reply(HTTPStatus.NOT_FOUND, "404 page not found")

    def do_POST(self) -> None:
        if self.path != "/api/generate":
            self.reply(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            requested = str(request["model"])
        except (ValueError, KeyError, TypeError):
            self.reply(HTTPStatus.BAD_REQUEST, {"error": "model is required"})
            return
        entry = self.state.catalogue.find(requested)
        if entry is None:
            log(f"load {requested}: not found")
            self.reply(
                HTTPStatus.NOT_FOUND,
                {"error": f'model "{requested}" not found, try pulling it first'},
            )
            return
        seconds = keep_alive_seconds(request.get("keep_alive"))
        now = time.time()
        with self.state.lock:
            if seconds == 0:
                self.state.loaded.pop(entry["name"], None)
                reason = "unload"
            else:
                self.state.loaded[entry["name"]] = (
                    entry,
                    None if seconds is None else now + seconds,
                )
                reason = "load"
        log(f"{reason} {entry['name']} keep_alive={request.get('keep_alive')!r}")
        created = datetime.now(timezone.utc).isoformat()
        self.reply(
            HTTPStatus.OK,
            {
                "model": requested,
                "created_at": created,
                "response": "",
                "done": True,
                "done_reason": reason,
            },
        )

    def running(self) -> list[dict[str, Any]]:
        now = time.time()
        result = []
        with self.state.lock:
            for name, (entry, expires) in list(self.state.loaded.items()):
                if expires is not None and expires <= now:
                    del self.state.loaded[name]
                    continue
                # Loaded "forever" shows as a date far in the future, as Ollama does.
                until = datetime.fromtimestamp(
                    expires if expires is not None else now + FOREVER, timezone.utc
                )
                result.append({**entry, "expires_at": until.isoformat(), "size_vram": 0})
        return result


def serve() -> int:
    root = models_root()
    address = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    catalogue = Catalogue(root)
    models, problems, referenced = catalogue.scan()
    settings = " ".join(
        f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("OLLAMA_")
    )
    log(f"starting {VERSION}; {settings}")
    log(f"serving {len(models)} models from {root}: {json.dumps(sorted(models))}")
    for name, reason in problems.items():
        log(f"cannot load {name}: {reason}")
    for name in catalogue.prunable(referenced):
        log(f"would prune blobs/{name}: no manifest references it")
    Handler.state = State(catalogue)
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 11434)), Handler)
    log(f"listening on {host or '127.0.0.1'}:{port or 11434}")
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ollama", description="test stand-in for the Ollama server"
    )
    parser.add_argument("command", choices=["serve"])
    parser.parse_args(argv)
    return serve()


if __name__ == "__main__":
    sys.exit(main())
