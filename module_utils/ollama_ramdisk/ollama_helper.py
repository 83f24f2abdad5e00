"""A private ``ollama serve`` on the disk store, for pulls and pushes.

The host's Ollama does the transfers (it speaks the registry protocol, checks
every blob's sha256 and writes the store as a plain ``ollama pull`` would),
but not the one ``ollama.service`` runs: that one serves the RAM disk, which
is sized for the current model set and would hold a pull only until the
write-back. This one listens on a free loopback port, keeps its store at the
disk store, runs with the store owner's rights and never prunes
(``OLLAMA_NOPRUNE``), so it adds models and removes nothing of the store's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from .bounded_http import TransportError, request
from .errors import InvalidOption, OperationFailed
from .identity import Identity

START_SECONDS = 60.0
STOP_SECONDS = 20.0
# What a pull needs from the caller's environment: the way out to a registry.
PASSED_ON = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")
SEARCHED = ("/usr/local/bin", "/usr/bin", "/bin", "/opt/ollama/bin")


def find_ollama(explicit: str | os.PathLike[str] | None) -> Path:
    """The ``ollama`` binary: the one given, else the first on PATH or in the
    installer's places."""
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise InvalidOption(f"ollama: {path} is not an executable file")
        return path
    found = shutil.which("ollama") or shutil.which("ollama", path=os.pathsep.join(SEARCHED))
    if found is None:
        raise InvalidOption(
            "ollama: no ollama binary on PATH or in " + ", ".join(SEARCHED) + ": install"
            " Ollama first, or name its binary (--ollama, ollama_ramdisk_ollama_binary)"
        )
    return Path(found)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _home(identity: Identity | None) -> str | None:
    """The server user's home, where Ollama keeps its key pair (as the service does)."""
    uid = os.geteuid() if identity is None else identity.uid
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None
    return home if os.path.isdir(home) else None


@contextlib.contextmanager
def helper_server(
    binary: Path,
    store: Path,
    identity: Identity | None,
    extra_environment: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Run the server for the block; yields its base URL."""
    address = f"127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory(prefix="ollama-ramdisk-helper-") as scratch:
        home = _home(identity)
        if home is None:
            home = scratch
            if identity is not None:
                os.chown(scratch, identity.uid, identity.gid)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": home,
            "OLLAMA_HOST": address,
            "OLLAMA_MODELS": str(store),
            "OLLAMA_NOPRUNE": "1",
            **{key: os.environ[key] for key in PASSED_ON if key in os.environ},
            **(extra_environment or {}),
        }
        log_path = Path(scratch) / "serve.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(binary), "serve"],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd="/",
                **_as_user(identity),
            )
        base = f"http://{address}"
        try:
            _wait_until_up(process, base, log_path)
            yield base
        finally:
            _stop(process)


def _as_user(identity: Identity | None) -> dict[str, object]:
    if identity is None:
        return {}
    return {"user": identity.uid, "group": identity.gid, "extra_groups": list(identity.groups)}


def _wait_until_up(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OperationFailed(
                f"ollama serve (for the pull) exited with {process.returncode}: {_tail(log)}"
            )
        try:
            if request(base + "/api/version", seconds=5.0).status == 200:
                return
        except TransportError:
            pass
        time.sleep(0.1)
    raise OperationFailed(
        f"ollama serve (for the pull) did not answer in {START_SECONDS:.0f} s: {_tail(log)}"
    )


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(lines[-5:]) or "no output"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
