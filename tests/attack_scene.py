"""The scene of the security tests: stores that belong to an unprivileged user
(``nobody`` here, standing for ``ollama``), who attacks with its own rights
(``setpriv``), and root runs of the command in processes of their own, so
that a hang is caught. ``host`` is a host as the installer leaves it;
``untouched`` asserts that root's victim tree did not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from storegen import MountTmpfs, StoreFactory, SyntheticStore, text, weights

USER, GROUP = "nobody", "nogroup"
UID, GID = 65534, 65534
CORE = Path(__file__).resolve().parents[1] / "module_utils"
# No run may take longer than this: the review's hangs were forever.
BOUND = 30.0


# ---------------------------------------------------------------- the scene


def as_user(*argv: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command run with the store owner's rights, as the attacker runs it."""
    command = ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--"]
    return subprocess.run(
        [*command, *map(str, argv)], capture_output=True, text=True, check=check, timeout=BOUND
    )


def attacker_shell(script: str) -> None:
    as_user("sh", "-euc", script)


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def json(self) -> dict:
        return json.loads(self.out)


def root_run(*argv: object, timeout: float = BOUND, open_files: int | None = None) -> Result:
    """The command as root in a process of its own, so that a hang is caught;
    ``open_files`` limits its descriptors as systemd's default LimitNOFILE does."""
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(CORE)}
    limit = ["prlimit", f"--nofile={open_files}:{open_files}", "--"] if open_files else []
    try:
        done = subprocess.run(
            [*limit, sys.executable, "-m", "ollama_ramdisk.cli", *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for more than {timeout:g} s: ollama-ramdisk {' '.join(map(str, argv))}")
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below root, links not followed: kind, owner, mode, content."""
    entries: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            status = path.lstat()
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            entries[str(path.relative_to(root))] = (
                status.st_mode,
                status.st_uid,
                status.st_gid,
                status.st_nlink,
                content,
            )
    status = root.stat()
    entries["."] = (status.st_mode, status.st_uid, status.st_gid)
    return entries


def give_to_owner(path: Path) -> None:
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(Path(directory, name), UID, GID)
    os.lchown(path, UID, GID)


@dataclass
class Host:
    """A host as the installer leaves it, with a RAM disk populated once."""

    source: SyntheticStore
    ramdisk: Path  # the tmpfs mount point, owned by the store owner
    victim: Path  # root's: nothing here may ever change
    secret: Path

    @property
    def dest(self) -> Path:
        return self.ramdisk / "models"

    def populate(self, *extra: object) -> Result:
        return root_run(
            "populate", "-q", "--source", self.source.root, "--dest", self.dest,
            "--owner", f"{USER}:{GROUP}", *extra, *self.source.models,
        )  # fmt: skip


@pytest.fixture
def host(store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path) -> Host:
    home = tmp_path / "usr-share-ollama"
    home.mkdir()
    source = store_factory(
        {"m:1": [weights(64 * 1024, "m1"), text("license")], "m:2": [weights(32 * 1024, "m2")]},
        root=home / "models",
    )
    give_to_owner(home)
    ramdisk = tmpfs("64m", options=f"uid={UID},gid={GID}")
    victim = tmp_path / "victim"
    (victim / "manifests" / "registry.ollama.ai" / "library" / "x").mkdir(parents=True)
    (victim / "blobs").mkdir()
    looks_like_a_blob = "sha256-" + "ab" * 32
    (victim / "blobs" / looks_like_a_blob).write_bytes(b"root's file")
    (victim / "manifests" / "registry.ollama.ai" / "library" / "x" / "latest").write_text("{}")
    (victim / "shadow").write_bytes(b"root:secret-hash:19000:0:99999:7:::\n")
    (victim / "shadow").chmod(0o600)
    victim.chmod(0o755)
    built = Host(source=source, ramdisk=ramdisk, victim=victim, secret=victim / "shadow")
    assert built.populate().code == 0
    return built


@pytest.fixture
def untouched(host: Host) -> Iterator[None]:
    """The victim tree is exactly as it was when the test ends."""
    before = snapshot(host.victim)
    yield
    assert snapshot(host.victim) == before
