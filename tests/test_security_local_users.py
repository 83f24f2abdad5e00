"""The second review, part 2: local users, API clients and operators' mistakes.

As in test_security.py, each test makes the attack as it was made, with the
attacker's own rights (``setpriv``), then runs the command as root in a
process of its own, and asserts that nothing outside the stores changed, that
no run hung past a bound, and that the message is clear. The attackers here
are a member of a shared store's group, the owner of the directory above
node_exporter's textfile directory, any other local user (``daemon``), and
whatever listens on Ollama's port (a real HTTP server on loopback).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from attack_scene import BOUND, GID, UID, USER, Host, root_run, snapshot
from storegen import MountTmpfs, StoreFactory, SyntheticStore, text, weights

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root and users")

OTHER_UID, OTHER_GID = 1, 1  # daemon: a local user who owns nothing of the stores


def as_member(gid: int, script: str) -> subprocess.CompletedProcess[str]:
    """A shell as ``nobody`` with ``gid`` among its groups (a group's member)."""
    return subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", f"--groups={gid}", "--",
         "sh", "-euc", script],
        capture_output=True, text=True, check=True, timeout=BOUND,
    )  # fmt: skip


def as_other(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_GID}", "--clear-groups", "--"]
    return subprocess.run(
        [*command, *argv], capture_output=True, text=True, check=check, timeout=BOUND
    )


# ---------------------------------------------------------------- 1. rights decided by modes


def _edit_accounts(*argv: str, done_when: tuple[int, ...] = (0,)) -> None:
    """groupadd, gpasswd, groupdel: retried while another worker holds
    /etc/group's lock; `done_when` lists the exit codes that end the edit."""
    for _attempt in range(50):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode in done_when:
            return
        if done.returncode == 2:  # a usage error: no retry mends it
            break
        time.sleep(0.1)
    pytest.fail(f"{' '.join(argv)}: {done.stderr}")


@contextlib.contextmanager
def group_of(*members: str) -> Iterator[tuple[str, int]]:
    """A group of its own with these members, removed afterwards. (groupadd
    --users is newer than Debian 11's shadow: the compat suite runs there.)"""
    name = f"ordt{os.getpid()}"
    _edit_accounts("groupadd", name)
    try:
        _edit_accounts("gpasswd", "-M", ",".join(members), name)
        yield name, grp.getgrnam(name).gr_gid
    finally:
        _edit_accounts("groupdel", name, done_when=(0, 6))  # 6: no such group


@dataclass
class SharedStore:
    """A disk store as administrators share one: root's, a group's to write
    (2775 directories, 0664 files), and a RAM disk root controls entirely."""

    source: SyntheticStore
    dest: Path
    secret: Path
    victim: Path

    def populate(self, *extra: object) -> object:
        return root_run(
            "populate", "--source", self.source.root, "--dest", self.dest, *extra, "m:1"
        )


def _shared_store(store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path, gid: int):
    source = store_factory({"m:1": [weights(64 * 1024, "m1"), text("license")]})
    for directory, dirs, files in os.walk(source.root):
        for name in dirs:
            os.chown(Path(directory, name), 0, gid)
            os.chmod(Path(directory, name), 0o2775)
        for name in files:
            os.chown(Path(directory, name), 0, gid)
            os.chmod(Path(directory, name), 0o664)
    os.chown(source.root, 0, gid)
    os.chmod(source.root, 0o2775)
    victim = tmp_path / "victim"
    victim.mkdir()
    secret = victim / "shadow"
    secret.write_bytes(b"root:secret-hash:19000:0:99999:7:::\n" * 2000)
    secret.chmod(0o600)
    dest = tmpfs("64m") / "models"  # root's, 0755: the run would stay root
    return SharedStore(source, dest, secret, victim)


def _plant_link_to_the_secret(shared: SharedStore, gid: int) -> str:
    """The member swaps the weights blob for a link to root's file, sized so
    that the manifest's size matches."""
    layer = shared.source.models["m:1"].layers[0]
    size = shared.secret.stat().st_size
    document = json.loads(shared.source.manifest_path("m:1").read_text())
    for entry in document["layers"]:
        if entry["digest"] == layer.digest:
            entry["size"] = size
    blob = shared.source.blob_path(layer)
    as_member(
        gid,
        f"rm -f '{blob}' && ln -s '{shared.secret}' '{blob}' &&"
        f" printf '%s' '{json.dumps(document)}' > '{shared.source.manifest_path('m:1')}.new' &&"
        f" mv '{shared.source.manifest_path('m:1')}.new' '{shared.source.manifest_path('m:1')}'",
    )
    return hashlib.sha256(shared.secret.read_bytes()).hexdigest()


def _nothing_of_the_secret_in(dest: Path, secret: Path) -> None:
    wanted = secret.read_bytes()[:64]
    for directory, _dirs, files in os.walk(dest):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                assert wanted not in path.read_bytes(), f"{path} holds root's secret"


def test_a_group_writable_store_with_several_members_is_refused_naming_it(
    store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    with group_of(USER, "daemon") as (group, gid):
        shared = _shared_store(store_factory, tmpfs, tmp_path, gid)
        before = snapshot(shared.victim)
        _plant_link_to_the_secret(shared, gid)

        run = shared.populate()

        assert run.code == 2, run.err
        assert f"{shared.source.root} (mode 2775, group {group}) may be changed" in run.err
        assert "members (daemon, nobody)" in run.err
        assert "--owner USER" in run.err
        assert not shared.dest.exists()  # refused before anything was made
        assert snapshot(shared.victim) == before


@pytest.mark.parametrize("owner", ["named", "only-member"])
def test_a_group_writable_store_is_worked_on_with_a_members_rights(
    store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path, owner: str
) -> None:
    members = (USER, "daemon") if owner == "named" else (USER,)
    with group_of(*members) as (group, gid):
        shared = _shared_store(store_factory, tmpfs, tmp_path, gid)
        before = snapshot(shared.victim)
        digest = _plant_link_to_the_secret(shared, gid)

        run = shared.populate(*(["--owner", f"{USER}:{group}"] if owner == "named" else []))

        # The member's rights: the kernel refuses the link to root's file.
        assert run.code == 1, run.err
        assert "cannot be read (Permission denied)" in run.err
        _nothing_of_the_secret_in(shared.dest.parent, shared.secret)
        assert digest not in run.err + run.out
        assert snapshot(shared.victim) == before


def test_a_world_writable_store_is_refused_naming_its_mode(
    store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    shared = _shared_store(store_factory, tmpfs, tmp_path, 0)
    os.chmod(shared.source.root, 0o777)

    run = shared.populate()

    assert run.code == 2
    assert f"{shared.source.root} (mode 0777) may be changed by every user" in run.err
    assert f"chmod o-w {shared.source.root}" in run.err
    assert not shared.dest.exists()


def test_a_sticky_directory_above_a_root_store_does_not_count(
    store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    # /tmp's case: others may add entries, never replace root's.
    shared = _shared_store(store_factory, tmpfs, tmp_path, 0)
    for directory, dirs, _files in os.walk(shared.source.root):
        for name in dirs:
            os.chmod(Path(directory, name), 0o755)
    os.chmod(shared.source.root, 0o755)
    os.chmod(shared.source.root.parent, 0o1777)

    run = shared.populate()

    assert run.code == 0, run.err
    assert (shared.dest / "blobs").stat().st_uid == 0  # nobody else controls it: root's


# ---------------------------------------------------------------- 2. the textfile directory


@dataclass
class Textfiles:
    home: Path  # the prometheus user's (nobody here)
    directory: Path  # node_exporter's textfile directory inside it, root's

    @property
    def file(self) -> Path:
        return self.directory / "ollama_ramdisk.prom"


@pytest.fixture
def textfiles(tmp_path: Path) -> Textfiles:
    home = tmp_path / "var-lib-prometheus"
    home.mkdir()
    os.chown(home, UID, GID)
    directory = home / "node-exporter"
    directory.mkdir()
    return Textfiles(home, directory)


def _status(host: Host, textfiles: Textfiles):
    return root_run("status", "--store", host.dest, "--prometheus", textfiles.file)


def test_the_textfile_is_written_as_root_into_roots_directory(
    host: Host, textfiles: Textfiles
) -> None:
    run = _status(host, textfiles)

    assert run.code == 0, run.err
    status = textfiles.file.lstat()
    assert (status.st_uid, status.st_mode & 0o777) == (0, 0o644)
    assert "ollama_ramdisk_models" in textfiles.file.read_text()


@pytest.mark.usefixtures("untouched")
def test_a_textfile_directory_swapped_for_a_link_is_not_written_through(
    host: Host, textfiles: Textfiles
) -> None:
    as_member(
        GID,
        f"cd '{textfiles.home}' && mv node-exporter real && ln -s '{host.victim}' node-exporter",
    )

    run = _status(host, textfiles)

    assert run.code == 1
    assert f"{textfiles.directory}: not a directory, or a link on the way" in run.err
    assert not (host.victim / "ollama_ramdisk.prom").exists()


@pytest.mark.usefixtures("untouched")
def test_a_textfile_directory_swapped_for_the_owners_own_is_written_with_the_owners_rights(
    host: Host, textfiles: Textfiles
) -> None:
    as_member(GID, f"cd '{textfiles.home}' && mv node-exporter real && mkdir node-exporter")

    run = _status(host, textfiles)

    assert run.code == 0, run.err
    assert textfiles.file.lstat().st_uid == UID


@pytest.mark.usefixtures("untouched")
def test_swapping_the_textfile_directory_in_a_loop_never_writes_elsewhere(
    host: Host, textfiles: Textfiles
) -> None:
    (textfiles.home / "real").mkdir()
    os.chown(textfiles.home / "real", UID, GID)
    swapper = subprocess.Popen(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "sh", "-c",
         f"cd '{textfiles.home}'; while :; do mv -T node-exporter real 2>/dev/null;"
         f" ln -sfn '{host.victim}' node-exporter; rm -f node-exporter;"
         f" mv -T real node-exporter 2>/dev/null; done"],
        start_new_session=True,
    )  # fmt: skip
    try:
        codes = [_status(host, textfiles).code for _ in range(20)]
    finally:
        os.killpg(swapper.pid, 9)
        swapper.wait()

    assert set(codes) <= {0, 1}
    assert not (host.victim / "ollama_ramdisk.prom").exists()


# ---------------------------------------------------------------- 3. the lock


def _hold_the_lock(lock: Path) -> subprocess.Popen[str]:
    """Another local user takes the lock (flock(1) opens it read-only) and keeps it."""
    return subprocess.Popen(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_GID}", "--clear-groups", "--",
         "flock", "--exclusive", str(lock), "sh", "-c", "echo held; exec sleep 120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def test_another_user_cannot_open_the_lock_file(host: Host) -> None:
    lock = host.dest / ".ollama-ramdisk.lock"
    status = lock.lstat()
    assert (status.st_uid, status.st_mode & 0o777) == (UID, 0o600)

    holder = _hold_the_lock(lock)
    _out, err = holder.communicate(timeout=BOUND)

    assert holder.returncode != 0
    assert "Permission denied" in err
    run = host.populate("--lock-timeout", "2")
    assert run.code == 0, run.err


def test_an_old_lock_file_anybody_could_open_is_replaced_even_while_held(host: Host) -> None:
    lock = host.dest / ".ollama-ramdisk.lock"
    lock.chmod(0o644)  # as versions before this one made it
    holder = _hold_the_lock(lock)
    try:
        assert holder.stdout.readline().strip() == "held"

        refill = host.populate("--lock-timeout", "2")  # what ExecStartPre runs
        verify = root_run("verify", "--store", host.dest)

        assert refill.code == 0, refill.err
        assert verify.code == 0, verify.err
        status = lock.lstat()
        assert (status.st_uid, status.st_mode & 0o777) == (UID, 0o600)
        assert not [name for name in os.listdir(host.dest) if name.endswith(".tmp")]
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    assert as_other("flock", "--nonblock", str(lock), "true", check=False).returncode != 0


# ---------------------------------------------------------------- 4. a hostile server on the port


class HostileServer:
    """Whatever a local user may run on Ollama's port while Ollama is stopped:
    it answers every request with ``answer`` (raw bytes), sent ``drip`` bytes
    at a time with a pause between, or endlessly when ``endless``."""

    def __init__(self, answer: bytes, drip: int = 0, endless: bool = False) -> None:
        self.answer, self.drip, self.endless = answer, drip, endless
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client:
            client.settimeout(BOUND)
            client.recv(65536)
            if self.drip:
                for index in range(0, len(self.answer), self.drip):
                    if self.stopping.wait(0.5):
                        return
                    client.sendall(self.answer[index : index + self.drip])
            else:
                client.sendall(self.answer)
            while self.endless and not self.stopping.is_set():
                client.sendall(b"[" * 65536)

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


def _http(body: bytes, *headers: str, length: int | None = None) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", *headers]
    head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


HOSTILE_ANSWERS = {
    "bad-status-line": (b"SPAM\r\n\r\n", {}),
    "more-than-100-headers": (_http(b"{}", *[f"X-{i}: {i}" for i in range(150)]), {}),
    "nested-too-deeply": (_http(b"[" * 200_000 + b"]" * 200_000), {}),
    "not-json": (_http(b"<html>"), {}),
    "one-byte-at-a-time": (_http(b'{"models": []}'), {"drip": 1}),
    "endless-body": (_http(b"", length=2**62), {"endless": True}),
}


@pytest.fixture(params=sorted(HOSTILE_ANSWERS))
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    answer, behaviour = HOSTILE_ANSWERS[request.param]
    server = HostileServer(answer, **behaviour)
    yield server
    server.close()


def test_status_says_ollama_is_down_and_still_writes_the_metrics(
    host: Host, hostile: HostileServer, tmp_path: Path
) -> None:
    textfile = tmp_path / "ollama_ramdisk.prom"

    run = root_run(
        "status", "--json", "--store", host.dest, "--ollama-host", f"127.0.0.1:{hostile.port}",
        "--prometheus", textfile,
    )  # fmt: skip

    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    assert run.seconds < 3.0 + 10.0  # "asked once with a 3 s timeout", plus start-up
    ollama = run.json["ollama"]
    assert ollama["up"] is False
    assert ollama["error"].startswith(f"http://127.0.0.1:{hostile.port}/api/ps: ")
    assert re.search(r'^ollama_ramdisk_ollama_up\{store="[^"]+"\} 0$', textfile.read_text(), re.M)


def test_preload_fails_clearly_within_its_bounds(hostile: HostileServer) -> None:
    run = root_run(
        "preload", "--host", f"127.0.0.1:{hostile.port}", "--wait", "3", "--retries", "1",
        "--load-timeout", "3", "m:1",
    )  # fmt: skip

    assert run.code == 1
    assert "Traceback" not in run.err
    assert f"127.0.0.1:{hostile.port}" in run.err
    assert run.seconds < 3 + 3 + 10.0


# ---------------------------------------------------------------- 5. unbounded metrics


def test_models_an_api_client_made_by_thousands_get_no_series_of_their_own(
    host: Host, tmp_path: Path
) -> None:
    # What 5,000 `ollama cp` leave: a manifest each, all sharing m:1's blobs.
    manifest = (host.dest / "manifests/registry.ollama.ai/library/m/1").read_text()
    copies = host.dest / "manifests/registry.ollama.ai/library/copy"
    copies.mkdir()
    for index in range(5000):
        (copies / f"c{index:05d}").write_text(manifest)
    os.chown(copies, UID, GID)
    textfile = tmp_path / "ollama_ramdisk.prom"

    run = root_run(
        "status", "--store", host.dest, "--source", host.source.root, "--prometheus", textfile,
        "--metrics-max-models", "50",
    )  # fmt: skip

    assert run.code == 0, run.err
    text = textfile.read_text()
    per_model = re.findall(
        r'^ollama_ramdisk_model_bytes\{store="[^"]+",model="([^"]+)"\}', text, re.M
    )
    assert len(per_model) == 50
    # The operator's models (the disk store has them) are among those kept.
    assert {"registry.ollama.ai/library/m:1", "registry.ollama.ai/library/m:2"} <= set(per_model)
    assert re.search(
        r'^ollama_ramdisk_models_left_out\{store="[^"]+",seen="store"\} 4952$', text, re.M
    )
    assert re.search(r'^ollama_ramdisk_models\{store="[^"]+"\} 5002$', text, re.M)
    assert len(text) < 64 * 1024
    assert "metrics: 4952 model(s) of the store" in run.err


# ---------------------------------------------------------------- 6. bad operator input


def test_a_config_nested_too_deeply_exits_2(host: Host, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("[" * 100_000 + "]" * 100_000)

    run = root_run("status", "--config", config)

    assert (run.code, run.err.strip()) == (
        2,
        f"ollama-ramdisk: error: config {config}: nested too deeply to be a config",
    )


def test_a_config_naming_a_fifo_exits_2_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)

    run = root_run("status", "--config", fifo, timeout=10)

    assert run.code == 2
    assert f"config {fifo}: not a regular file: a FIFO" in run.err


NO_STORE = ["--source", "/nonexistent", "--dest", "/nonexistent"]
BAD_NUMBERS = {
    "superscript-two": (["preload", "--keep-alive", "²"], "keep_alive: '²' is neither seconds"),
    "5000-digits": (["preload", "--keep-alive", "9" * 5000], "seconds is beyond any duration"),
    "beyond-int64": (["preload", "--keep-alive", "1" + "0" * 30], "is beyond any duration"),
    "no-unit": (["preload", "--keep-alive", "forever"], "is neither seconds nor a Go duration"),
    "owner-superscript": (["populate", *NO_STORE, "--owner", "²"], "no such user '²'"),
    "owner-5000-digits": (["populate", *NO_STORE, "--owner", "9" * 5000], "owner: user id"),
    "jobs-superscript": (["populate", *NO_STORE, "--jobs", "²"], "expected a whole number"),
}


@pytest.mark.parametrize(("argv", "message"), BAD_NUMBERS.values(), ids=BAD_NUMBERS.keys())
def test_bad_numbers_exit_2_with_a_message(argv: list[str], message: str) -> None:
    run = root_run(*argv, "m:1")

    assert run.code == 2, run.err
    assert message in run.err
    assert "Traceback" not in run.err
