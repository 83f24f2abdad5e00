"""Shared fixtures: real tmpfs mounts and synthetic Ollama stores.

``tmpfs(size)`` mounts a real tmpfs (root only) and unmounts it at teardown;
``store_factory(models=None, name="store")`` writes a store under the test's
tmp dir (the realistic fleet of ``storegen.FLEET`` when ``models`` is None);
``fleet`` is that fleet, ready; ``cli(*argv)`` runs the command in-process.
The real Ollama and registry come from real_parts.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from ollama_ramdisk import stopping
from ollama_ramdisk.cli import main
from storegen import (
    LayerSpec,
    MountTmpfs,
    StoreFactory,
    SyntheticStore,
    fleet_store,
    make_store,
)

# The real Ollama and registry, and the security tests' scene, as fixtures.
pytest_plugins = ["real_parts", "attack_scene"]

# No per-example deadline: the machines the tests run on are shared and noisy,
# and what the property tests check is what the core returns, not how fast.
settings.register_profile("ollama-ramdisk", deadline=None)
settings.load_profile("ollama-ramdisk")


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Each test starts with Python's own SIGINT handler (a test runner may have
    been started with SIGINT ignored) and leaves the handlers as it found them,
    with no stop request of the core's left behind."""
    saved = {signum: signal.getsignal(signum) for signum in stopping.STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stopping.reset()
    yield
    stopping.reset()
    for signum, handler in saved.items():
        signal.signal(signum, handler)


# The session's own temporary root (pytest_configure): the directories the
# tests open to other users lie below it, and only this session changes it.
SESSION_ROOT_VARIABLE = "OLLAMA_RAMDISK_TEST_SESSION_ROOT"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give the session a temporary root of its own (xdist's workers inherit it).

    pytest's default root, /tmp/pytest-of-USER, is shared by every pytest
    session of the user, and each one makes it 0700 when it starts: a second
    session (a Molecule verifier, a second suite) would then lock the store
    owner out of every test's directory halfway through a run.
    """
    if config.option.basetemp is not None or hasattr(config, "workerinput"):
        return
    root = Path(tempfile.mkdtemp(prefix="ollama-ramdisk-tests-"))
    root.chmod(0o755)
    os.environ[SESSION_ROOT_VARIABLE] = str(root)
    config.option.basetemp = root / "basetemp"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's root after a green run; keep it for a red one."""
    root = os.environ.get(SESSION_ROOT_VARIABLE)
    if root and exitstatus == 0 and not hasattr(session.config, "workerinput"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _traversable_tmp_path(tmp_path: Path) -> None:
    """pytest makes its temporary directories 0700; a root run that works as a
    store's owner (identity.py) must be able to reach the stores under them, as
    it reaches /mnt/ollama and /usr/share/ollama on a host. Only directories
    below the session's root are opened, never one above it (such as /tmp)."""
    root = os.environ.get(SESSION_ROOT_VARIABLE)
    top = Path(root) if root else tmp_path
    for directory in [tmp_path, *tmp_path.parents]:
        if directory != top and top not in directory.parents:
            break
        if directory.stat().st_uid == os.geteuid():
            directory.chmod(0o755)


def _unmount(path: Path) -> None:
    # A lazy unmount as a last resort, so that no test leaves a mount behind.
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[MountTmpfs]:
    """Mount real tmpfs file systems: ``tmpfs("8m")`` -> the mount point."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: str | int = "64m", name: str | None = None, options: str = "") -> Path:
        path = tmp_path / (name or f"tmpfs{len(mounted)}")
        path.mkdir(parents=True, exist_ok=True)
        extra = f",{options}" if options else ""
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755{extra}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        _unmount(path)


@pytest.fixture
def store_factory(tmp_path: Path) -> StoreFactory:
    """Write synthetic stores: ``store_factory({"m:t": [layers...]}, name="src")``."""

    def build(
        models: Mapping[str, Sequence[LayerSpec]] | None = None,
        name: str = "store",
        root: Path | None = None,
    ) -> SyntheticStore:
        where = root if root is not None else tmp_path / name
        if models is None:
            return fleet_store(where)
        return make_store(where, models)

    return build


@pytest.fixture
def fleet(store_factory: StoreFactory) -> SyntheticStore:
    """The realistic fleet store of storegen.FLEET."""
    return store_factory()


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run main() in-process: ``cli("plan", "--source", dir, ...)`` -> Run."""

    def run(*argv: object) -> Run:
        code = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
