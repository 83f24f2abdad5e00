"""The `ollama` user must not be able to turn a root run of the command against root.

Each test reproduces one finding of the adversarial review as an attacker
would: the stores belong to an unprivileged user (``nobody`` here, standing
for ``ollama``), that user changes them with its own rights (``setpriv``),
and then root runs the command, as Ansible and ``ExecStartPre`` do. Every
test asserts that nothing outside the stores changed (a root-owned victim
tree, compared entry by entry), that no run hung past a bound, and that the
exit code and message are clear.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from attack_scene import (
    BOUND,
    CORE,
    GID,
    GROUP,
    UID,
    USER,
    Host,
    Result,
    attacker_shell,
    give_to_owner,
    root_run,
)
from storegen import MountTmpfs, StoreFactory, text, weights

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root and a user")

# ---------------------------------------------------------------- 1. root hands a directory over


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("command", ["populate", "populate-prune", "verify-repair"])
def test_a_store_root_swapped_for_a_link_to_a_root_directory_is_refused(
    host: Host, command: str
) -> None:
    attacker_shell(f"rm -rf '{host.dest}' && ln -s '{host.victim}' '{host.dest}'")

    if command == "verify-repair":
        run = root_run("verify", "--store", host.dest, "--repair", "--source", host.source.root)
    else:
        run = host.populate(*(["--prune"] if command == "populate-prune" else []))

    assert run.code == 2, run.err
    assert f"{host.dest} is a symlink" in run.err
    assert host.dest.is_symlink()  # the link itself is left alone, never chowned
    assert host.dest.lstat().st_uid == UID


@pytest.mark.usefixtures("untouched")
def test_a_link_above_the_store_root_leads_nowhere_root_could_write(host: Host) -> None:
    # The RAM disk's owner controls every directory below the mount point: a
    # link one level up is followed, but with the owner's rights only.
    attacker_shell(f"mkdir '{host.ramdisk}/sub' && ln -s '{host.victim}' '{host.ramdisk}/sub/x'")
    dest = host.ramdisk / "sub" / "x" / "models"

    run = root_run(
        "populate", "--source", host.source.root, "--dest", dest, "--prune", *host.source.models
    )

    assert run.code == 1
    assert "Permission denied" in run.err
    assert not (host.victim / "models").exists()


@pytest.mark.usefixtures("untouched")
def test_a_disk_store_swapped_for_a_link_is_not_written_through(host: Host) -> None:
    # What the removal playbook's write-back does: the RAM disk copied back to
    # the disk store, whose parent the owner controls as well.
    attacker_shell(f"mv '{host.source.root}' '{host.source.root}.real'")
    attacker_shell(f"ln -s '{host.victim}' '{host.source.root}'")

    run = root_run(
        "populate", "--source", host.dest, "--dest", host.source.root, *host.source.models
    )

    assert run.code == 2
    assert "is a symlink" in run.err


def test_owner_cannot_be_given_to_anyone_but_the_user_who_controls_the_store(host: Host) -> None:
    run = root_run(
        "populate", "--source", host.source.root, "--dest", host.dest, "--owner", "root:root",
        *host.source.models,
    )  # fmt: skip

    assert run.code == 2
    assert "owner: files cannot be given to uid 0" in run.err
    assert "belongs to nobody" in run.err


def test_every_file_a_root_run_creates_belongs_to_the_store_owner(host: Host) -> None:
    attacker_shell(f"rm -rf '{host.dest}/blobs'")

    run = host.populate("--verify")

    assert run.code == 0, run.err
    for path in [host.dest, *host.dest.rglob("*")]:
        assert (path.lstat().st_uid, path.lstat().st_gid) == (UID, GID), path


# ---------------------------------------------------------------- 2. root-only files


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("verify", [False, True])
def test_a_source_blob_linked_to_a_root_only_file_is_never_copied(host: Host, verify: bool) -> None:
    # The owner names a blob anything and gives the secret's size, which it can
    # see; the secret's hash it cannot know, and no message may tell it.
    secret = host.secret.read_bytes()
    name = "12" * 32
    document = json.loads(host.source.manifest_path("m:2").read_text())
    document["layers"] = [{"mediaType": "x", "digest": f"sha256:{name}", "size": len(secret)}]
    thief = host.source.manifest_path("m:2").parent / "thief"
    attacker_shell(f"printf '%s' '{json.dumps(document)}' > '{thief}'")
    attacker_shell(f"ln -s '{host.secret}' '{host.source.root}/blobs/sha256-{name}'")

    run = root_run(
        "populate", "--source", host.source.root, "--dest", host.dest,
        *(["--verify"] if verify else []), "m:thief",
    )  # fmt: skip

    assert run.code == 1
    assert "cannot be read (Permission denied)" in run.err
    assert not (host.dest / "blobs" / f"sha256-{name}").exists()
    assert hashlib.sha256(secret).hexdigest() not in run.err + run.out


# ---------------------------------------------------------------- 3. FIFOs and swaps


def _fifo_instead_of(path: Path) -> None:
    attacker_shell(f"rm -f '{path}' && mkfifo '{path}'")


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("command", ["populate", "verify-model"])
def test_a_fifo_as_a_manifest_in_the_ram_disk_does_not_hang(host: Host, command: str) -> None:
    _fifo_instead_of(host.dest / host.source.manifest_path("m:1").relative_to(host.source.root))

    if command == "populate":
        run = host.populate()
        assert run.code == 0, run.err  # a manifest that is not a file is replaced
    else:
        run = root_run("verify", "--json", "--store", host.dest, "m:1")
        assert run.code == 1
        assert "is a FIFO, not a manifest" in run.err


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("command", ["verify", "populate-dry-run", "populate"])
def test_a_fifo_as_the_lock_file_does_not_hang(host: Host, command: str) -> None:
    _fifo_instead_of(host.dest / ".ollama-ramdisk.lock")

    if command == "verify":
        run = root_run("verify", "--store", host.dest)
    else:
        run = host.populate(*(["--dry-run"] if command == "populate-dry-run" else []))

    assert run.code == 1
    assert ".ollama-ramdisk.lock: is not a file" in run.err


@pytest.mark.usefixtures("untouched")
def test_a_fifo_as_an_empty_source_blob_does_not_hang(host: Host) -> None:
    empty = text(b"")
    host.source.add("empty:1", [weights(1000, "e"), empty])
    give_to_owner(host.source.root)
    _fifo_instead_of(host.source.root / empty.relpath)

    run = root_run("populate", "--source", host.source.root, "--dest", host.dest, "empty:1")

    assert run.code == 1
    assert "not a regular file: a FIFO" in run.err
    assert not (host.dest / empty.relpath).exists()


def test_a_fifo_as_a_source_manifest_does_not_hang_plan(host: Host) -> None:
    _fifo_instead_of(host.source.manifest_path("m:2"))

    run = root_run("plan", "--source", host.source.root, "m:1", "m:2")

    assert run.code == 2
    assert "is a FIFO, not a manifest" in run.err


class Swapper:
    """The attacker swapping a manifest between a file and a FIFO, as fast as it can."""

    def __init__(self, manifest: Path) -> None:
        self.manifest = manifest
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Swapper:
        content = self.manifest.read_bytes().decode()
        script = (
            f"cd '{self.manifest.parent}'; while :; do"
            f" printf '%s' '{content}' > .f && mv -f .f '{self.manifest.name}';"
            f" rm -f .p; mkfifo .p && mv -f .p '{self.manifest.name}'; done"
        )
        self.process = subprocess.Popen(
            ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "sh", "-c", script],
            start_new_session=True,
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(("command", "rounds"), [("status", 40), ("verify", 20)])
def test_swapping_a_manifest_for_a_fifo_in_a_loop_hangs_no_run(
    host: Host, command: str, rounds: int
) -> None:
    manifest = host.dest / host.source.manifest_path("m:1").relative_to(host.source.root)
    codes = set()
    with Swapper(manifest):
        for _ in range(rounds):
            argv = ["status", "--json"] if command == "status" else ["verify", "-q"]
            run = root_run(*argv, "--store", host.dest, timeout=10)
            codes.add(run.code)
    assert codes <= {0, 1}


# ---------------------------------------------------------------- 4. unbounded work


@pytest.mark.usefixtures("untouched")
def test_a_sparse_blob_claiming_2_62_bytes_is_corrupt_at_once_not_hashed_for_years(
    host: Host,
) -> None:
    giant = 2**62
    manifest = host.dest / host.source.manifest_path("m:2").relative_to(host.source.root)
    document = json.loads(manifest.read_text())
    hex_ = "cd" * 32
    document["layers"][0] = {"mediaType": "x", "digest": f"sha256:{hex_}", "size": giant}
    attacker_shell(
        f"printf '%s' '{json.dumps(document)}' > '{manifest}'"
        f" && truncate -s {giant} '{host.dest}/blobs/sha256-{hex_}'"
    )

    verify = root_run("verify", "--json", "--store", host.dest, "m:2", timeout=10)
    status = root_run("status", "--json", "--store", host.dest, timeout=10)

    assert verify.code == 1
    assert verify.json["corrupt"] == [f"blobs/sha256-{hex_}"]
    assert "more than its file system holds" in verify.err
    assert verify.json["bytes"] < 1024 * 1024
    models = {model["name"]: model for model in status.json["models"]}
    assert models["registry.ollama.ai/library/m:2"]["residency"] == "partial"


@pytest.mark.usefixtures("untouched")
def test_a_source_blob_linked_to_dev_zero_cannot_fill_the_ram_disk(host: Host) -> None:
    empty = text(b"")
    host.source.add("zero:1", [weights(1000, "z"), empty])
    give_to_owner(host.source.root)
    attacker_shell(f"rm '{host.source.root / empty.relpath}'")
    attacker_shell(f"ln -s /dev/zero '{host.source.root / empty.relpath}'")
    used_before = os.statvfs(host.ramdisk).f_bfree

    run = root_run(
        "populate", "--verify", "--source", host.source.root, "--dest", host.dest, "zero:1",
        timeout=10,
    )  # fmt: skip

    assert run.code == 1
    assert "not a regular file: a character device" in run.err
    assert os.statvfs(host.ramdisk).f_bfree >= used_before - 16


# Started with the signals ignored, as a CI runner or a script's background job
# starts a command: the run must still stop (the review's lost SIGINT).
IGNORING_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN);"
    " signal.signal(signal.SIGTERM, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_long_verify_and_its_workers_at_once(
    store_factory: StoreFactory, signum: int, inherited: str
) -> None:
    built = store_factory({"big:1": [weights(1000, "b")]})
    # 16 GiB of zeros, sparse: a minute of hashing, ended after one second.
    big = "ef" * 32
    with open(built.root / "blobs" / f"sha256-{big}", "wb") as handle:
        handle.truncate(16 * 1024**3)
    document = json.loads(built.manifest_path("big:1").read_text())
    document["layers"].append({"mediaType": "x", "digest": f"sha256:{big}", "size": 16 * 1024**3})
    built.manifest_path("big:1").write_text(json.dumps(document))
    env = {**os.environ, "PYTHONPATH": str(CORE)}
    start = [sys.executable, "-c", IGNORING_THEN_EXEC] if inherited == "ignored" else []
    process = subprocess.Popen(
        [*start, sys.executable, "-m", "ollama_ramdisk.cli", "verify", "--jobs", "2",
         "--store", built.root],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    _wait_until_it_has_read(process, 256 * 1024**2)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=BOUND)

    assert time.monotonic() - sent < 2.0
    assert process.returncode == 128 + signum
    assert f"interrupted by {signal.Signals(signum).name}" in err


def _wait_until_it_has_read(process: subprocess.Popen[str], nbytes: int) -> None:
    """An event, not a delay: the process has read ``nbytes`` (its /proc io)."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline and process.poll() is None:
        io = Path(f"/proc/{process.pid}/io").read_text()
        if int(io.split("rchar: ")[1].split()[0]) >= nbytes:
            return
        time.sleep(0.01)
    pytest.fail(f"verify read less than {nbytes} bytes in {BOUND:g} s")


# ---------------------------------------------------------------- 5. digest case


def test_a_layer_digest_in_upper_case_names_its_file_as_ollama_does(
    store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    layer = weights(4096, "upper")
    built = store_factory({"up:1": [layer]})
    manifest = built.manifest_path("up:1")
    document = json.loads(manifest.read_text())
    upper = layer.hex.upper()
    document["layers"][0]["digest"] = f"sha256:{upper}"
    manifest.write_text(json.dumps(document))
    (built.root / layer.relpath).rename(built.root / "blobs" / f"sha256-{upper}")
    dest = tmpfs("8m") / "models"

    populated = root_run("populate", "--json", "--source", built.root, "--dest", dest, "up:1")
    status = root_run("status", "--json", "--store", dest)
    verified = root_run("verify", "--json", "--store", dest)

    assert populated.code == 0, populated.err
    assert f"blobs/sha256-{upper}" in populated.json["copied"]
    assert (dest / "blobs" / f"sha256-{upper}").read_bytes() == layer.content
    assert status.json["models"][0]["residency"] == "ram"
    assert verified.code == 0, verified.err


# ---------------------------------------------------------------- 6. chmod through a link


def test_the_metrics_file_is_never_chmodded_through_a_link(host: Host, tmp_path: Path) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    os.chown(textfiles, UID, GID)  # writable by another user, as the review found it
    victim = host.victim / "shadow"
    before = victim.stat()
    # The racer replaces every temporary file it sees with a link to the victim.
    racer = subprocess.Popen(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "sh", "-c",
         f"cd '{textfiles}'; while :; do for f in .ollama.prom.*; do"
         f" [ -f \"$f\" ] && ln -sf '{victim}' \"$f\"; done; done"],
        start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(30):
            root_run("status", "--store", host.dest, "--prometheus", textfiles / "ollama.prom")
    finally:
        os.killpg(racer.pid, signal.SIGKILL)
        racer.wait()

    after = victim.stat()
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert victim.read_bytes().startswith(b"root:")


# ---------------------------------------------------------------- 7. the lock as a hard link


@pytest.mark.parametrize(
    ("command", "refusal"),
    [
        ("populate", "Permission denied"),  # the kernel: the owner may not write it
        ("verify-repair", "Permission denied"),
        ("populate-dry-run", "has other hard links"),  # readable: the check refuses it
        ("verify", "has other hard links"),
    ],
)
def test_a_lock_file_hard_linked_to_a_root_file_is_refused_untouched(
    host: Host, command: str, refusal: str
) -> None:
    lock = host.dest / ".ollama-ramdisk.lock"
    lock.unlink()
    # A root file on the same file system; the link made by root, as the owner
    # could with fs.protected_hardlinks=0.
    victim = host.ramdisk / "root-file"
    victim.write_bytes(b"root's")
    victim.chmod(0o644)
    os.link(victim, lock)

    if command.startswith("populate"):
        run = host.populate(*(["--dry-run"] if command.endswith("dry-run") else []))
    elif command == "verify":
        run = root_run("verify", "--store", host.dest)
    else:
        run = root_run("verify", "--store", host.dest, "--repair", "--source", host.source.root)

    assert run.code == 1
    assert f"{lock}: " in run.err
    assert refusal in run.err
    status = victim.stat()
    assert (status.st_uid, status.st_mode & 0o777, victim.read_bytes()) == (0, 0o644, b"root's")


# ---------------------------------------------------------------- 8. clear exit 2


def _write_manifest(path: Path, raw: str) -> None:
    command = ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups"]
    subprocess.run([*command, "sh", "-c", f"cat > '{path}'"], input=raw, text=True, check=True)


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("command", ["status", "verify", "populate"])
def test_a_manifest_nested_200000_levels_deep_is_malformed_not_a_traceback(
    host: Host, command: str
) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    if command == "populate":
        path = host.source.manifest_path("m:1")
        run_argv = ["populate", "--source", host.source.root, "--dest", host.dest, "m:1"]
    else:
        path = host.dest / host.source.manifest_path("m:1").relative_to(host.source.root)
        run_argv = [command, "--store", host.dest, *(["m:1"] if command == "verify" else [])]
    _write_manifest(path, deep)

    run = root_run(*run_argv, "--json")

    assert "Traceback" not in run.err
    assert "nested too deeply" in run.err + run.out
    assert run.code == (2 if command == "populate" else 1 if command == "verify" else 0)


def test_a_size_of_10_to_the_400_is_malformed_even_with_json(host: Host) -> None:
    path = host.source.manifest_path("m:1")
    document = json.loads(path.read_text())
    document["layers"][0]["size"] = 10**400
    _write_manifest(path, json.dumps(document))

    plan = root_run("plan", "--json", "--source", host.source.root, "m:1")
    status = root_run("status", "--json", "--store", host.source.root)

    assert plan.code == 2
    assert "Traceback" not in plan.err + status.err
    assert "size 1000000000000000000000000000... (401 characters) is not a byte count" in plan.err
    assert status.code == 0
    assert status.json["models"][0]["residency"] == "partial"


def test_dest_as_a_dangling_link_exits_2(host: Host, tmp_path: Path) -> None:
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")

    run = root_run("populate", "--source", host.source.root, "--dest", dangling, "m:1")

    assert run.code == 2
    assert f"dest: {dangling} is a symlink" in run.err
    assert "Traceback" not in run.err


def test_a_400_digit_size_option_exits_2(host: Host) -> None:
    run = root_run("plan", "--source", host.source.root, "--reserve", "9" * 400, "m:1")

    assert run.code == 2
    assert "reserve" in run.err
    assert "is larger than any size a host can have" in run.err
    assert "Traceback" not in run.err


# ---------------------------------------------------------------- 9. listing outside the store


@pytest.mark.usefixtures("untouched")
def test_manifests_linked_to_a_root_only_directory_are_not_listed(host: Host) -> None:
    (host.victim / "manifests").chmod(0o700)
    attacker_shell(
        f"rm -rf '{host.dest}/manifests' && ln -s '{host.victim}/manifests' '{host.dest}/manifests'"
    )

    run = root_run("status", "--json", "--store", host.dest)

    assert run.code == 1
    assert "manifests: is a symlink" in run.err
    assert "library/x" not in run.out
    (host.victim / "manifests").chmod(0o755)


# ---------------------------------------------------------------- write-back


@pytest.mark.usefixtures("untouched")
def test_a_root_write_back_works_as_the_owner_and_follows_no_link(host: Host) -> None:
    # A model made in RAM by an API client, one of its blobs a link to root's secret.
    name = "34" * 32
    document = {"schemaVersion": 2, "config": {"mediaType": "x", "digest": f"sha256:{name}",
                "size": len(host.secret.read_bytes())}, "layers": []}  # fmt: skip
    thief = host.dest / "manifests/registry.ollama.ai/library/thief/1"
    attacker_shell(f"mkdir -p '{thief.parent}' && printf '%s' '{json.dumps(document)}' > '{thief}'")
    attacker_shell(f"ln -s '{host.secret}' '{host.dest}/blobs/sha256-{name}'")
    made = host.dest / "manifests/registry.ollama.ai/library/made/1"
    attacker_shell(f"mkdir -p '{made.parent}' && cp '{host.dest}/manifests/registry.ollama.ai/"
                   f"library/m/1' '{made}'")  # fmt: skip

    run = root_run("writeback", "--json", "--reserve", "0", "--source", host.source.root,
                   "--dest", host.dest)  # fmt: skip

    assert run.code == 1
    assert "thief:1 not written back" in run.err
    assert not (host.source.root / "blobs" / f"sha256-{name}").exists()
    written = host.source.root / "manifests/registry.ollama.ai/library/made/1"
    assert written.read_bytes() == made.read_bytes()
    assert (written.stat().st_uid, written.stat().st_gid) == (UID, GID)


# ---------------------------------------------------------------- second review, 1


def _ram_model(host: Host, name: str, digest: str, size: int) -> None:
    """A model an API client made in the RAM disk: one layer, ``digest`` and ``size``."""
    document = {"schemaVersion": 2, "config": {"mediaType": "x", "digest": f"sha256:{digest}",
                "size": size}, "layers": []}  # fmt: skip
    path = host.dest / f"manifests/registry.ollama.ai/library/{name}/1"
    attacker_shell(f"mkdir -p '{path.parent}' && printf '%s' '{json.dumps(document)}' > '{path}'")


@pytest.mark.parametrize("verify", [False, True])
def test_write_back_never_overwrites_a_blob_only_the_disk_store_has(
    host: Host, verify: bool
) -> None:
    # A model of the disk store alone (not in the RAM disk): its digest is public.
    disk_only = weights(48 * 1024, "disk only")
    host.source.add("diskonly:1", [disk_only])
    give_to_owner(host.source.root)
    before = (host.source.root / disk_only.relpath).read_bytes()
    # A model made in RAM names that digest with another size, and ships a file of it.
    _ram_model(host, "evil", disk_only.hex, 1000)
    attacker_shell(f"head -c 1000 /dev/urandom > '{host.dest}/blobs/{disk_only.filename}'")
    made = host.dest / "manifests/registry.ollama.ai/library/made/1"
    attacker_shell(f"mkdir -p '{made.parent}' && cp '{host.dest}/manifests/registry.ollama.ai/"
                   f"library/m/1' '{made}'")  # fmt: skip

    run = root_run("writeback", "--json", "--reserve", "0", *(["--verify"] if verify else []),
                   "--source", host.source.root, "--dest", host.dest)  # fmt: skip

    assert run.code == 1
    assert "evil:1 not written back" in run.err
    assert f"blobs/{disk_only.filename}" in run.err
    assert (host.source.root / disk_only.relpath).read_bytes() == before
    assert not (host.source.root / "manifests/registry.ollama.ai/library/evil/1").exists()
    # The others go on: the model made in RAM from a real one is written back.
    assert (host.source.root / "manifests/registry.ollama.ai/library/made/1").exists()
    # And the disk store's model still fills a RAM disk, verified.
    refill = root_run("populate", "-q", "--verify", "--source", host.source.root,
                      "--dest", host.ramdisk / "again", "diskonly:1", "m:1")  # fmt: skip
    assert refill.code == 0, refill.err


def test_write_back_never_writes_a_ram_blob_that_does_not_hash_to_its_name(host: Host) -> None:
    forged = "c0" * 32
    _ram_model(host, "forged", forged, 4096)
    attacker_shell(f"head -c 4096 /dev/urandom > '{host.dest}/blobs/sha256-{forged}'")

    run = root_run("writeback", "--json", "--reserve", "0", "--source", host.source.root,
                   "--dest", host.dest)  # fmt: skip

    assert run.code == 1
    assert f"forged:1 not written back: blobs/sha256-{forged}: content hashes to" in run.err
    assert not (host.source.root / f"blobs/sha256-{forged}").exists()
    staging = host.source.root / ".ollama-ramdisk-tmp"
    assert not staging.exists() or not list(staging.iterdir())


def test_a_corrupt_disk_blob_is_replaced_only_by_a_ram_copy_that_hashes_to_its_name(
    host: Host,
) -> None:
    layer = host.source.models["m:2"].blobs[1]  # the weights, also in the RAM disk
    disk_copy = host.source.root / layer.relpath
    disk_copy.write_bytes(b"truncated")  # corrupt on disk, another size
    # A model made in RAM that uses the same weights (the RAM copy is sound).
    made = host.dest / "manifests/registry.ollama.ai/library/again/2"
    attacker_shell(f"mkdir -p '{made.parent}' && cp '{host.dest}/manifests/registry.ollama.ai/"
                   f"library/m/2' '{made}'")  # fmt: skip

    run = root_run("writeback", "--json", "--reserve", "0", "--source", host.source.root,
                   "--dest", host.dest)  # fmt: skip

    assert run.code == 0, run.err
    assert "does not hash to its name" in run.err
    assert disk_copy.read_bytes() == (host.dest / layer.relpath).read_bytes()


# ---------------------------------------------------------------- second review, 2 to 4

FLOOD = 5000
FLOOD_BOUND = 90.0  # seconds a refill or a write-back may take with the flood
MANIFESTS = "manifests/registry.ollama.ai/library"


def _flood_ram(host: Host, names: list[tuple[str, str]], template: str = "m/1") -> None:
    """As an API client does with `ollama cp`: one manifest per name, as the owner."""
    script = (
        "import os, sys\n"
        f"raw = open({str(host.dest / MANIFESTS / template)!r}, 'rb').read()\n"
        f"root = {str(host.dest / 'manifests')!r}\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    directory, tag = line.rsplit(' ', 1)\n"
        "    os.makedirs(os.path.join(root, directory), exist_ok=True)\n"
        "    open(os.path.join(root, directory, tag), 'wb').write(raw)\n"
    )
    lines = "\n".join(f"{directory} {tag}" for directory, tag in names)
    subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--",
         sys.executable, "-c", script],
        input=lines, text=True, check=True, timeout=BOUND,
    )  # fmt: skip


def _reboot_and_refill(host: Host, open_files: int | None = None) -> Result:
    """A reboot empties the RAM disk; ExecStartPre refills it as the role runs it."""
    attacker_shell(f"rm -rf '{host.dest}'")
    return root_run(
        "populate", "-q", "--prune", "--fallback-link", "--source", host.source.root,
        "--dest", host.dest, "--owner", f"{USER}:{GROUP}", *host.source.models,
        timeout=FLOOD_BOUND, open_files=open_files,
    )  # fmt: skip


def _manifests_in(store: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(store / "manifests"))


def test_a_flood_of_models_in_ram_exhausts_no_descriptor_of_the_refill_or_the_write_back(
    host: Host,
) -> None:
    _flood_ram(host, [(f"registry.ollama.ai/library/flood{i}", "1") for i in range(FLOOD)])

    refill = root_run(
        "populate", "--json", "--prune", "--fallback-link", "--source", host.source.root,
        "--dest", host.dest, "--owner", f"{USER}:{GROUP}", *host.source.models,
        timeout=FLOOD_BOUND, open_files=1024,
    )  # fmt: skip
    written = root_run(
        "writeback", "--json", "--reserve", "0", "--source", host.source.root,
        "--dest", host.dest, timeout=FLOOD_BOUND, open_files=1024,
    )  # fmt: skip
    again = _reboot_and_refill(host, open_files=1024)

    assert refill.code == 0, refill.err[-2000:]
    assert len(refill.json["ram_only"]) == FLOOD
    assert written.code == 0, written.err[-2000:]
    assert len(written.json["written"]) == FLOOD
    assert again.code == 0, again.err[-2000:]
    assert _manifests_in(host.dest) == FLOOD + len(host.source.models)  # all still listed
    assert max(refill.seconds, written.seconds, again.seconds) < FLOOD_BOUND


def test_a_record_flooded_past_its_bound_refuses_new_names_and_keeps_the_old(host: Host) -> None:
    # A user's model made in RAM and written back: recorded.
    _flood_ram(host, [("registry.ollama.ai/library/mine", "1")])
    first = root_run("writeback", "--reserve", "0", "--source", host.source.root,
                     "--dest", host.dest)  # fmt: skip
    assert first.code == 0, first.err
    # Then 2,300 `ollama cp` under the longest names a file system takes (a
    # host is one directory: 255 bytes at most).
    long_host = "h" * 247 + ".example"
    _flood_ram(host, [(f"{long_host}/{'n' * 75}{i:05d}/{'m' * 75}{i:05d}", f"{'t' * 75}{i:05d}")
                      for i in range(2300)])  # fmt: skip

    flooded = root_run("writeback", "--reserve", "0", "--source", host.source.root,
                       "--dest", host.dest, timeout=FLOOD_BOUND)  # fmt: skip
    refill = _reboot_and_refill(host)
    after = root_run("writeback", "--reserve", "0", "--source", host.source.root,
                     "--dest", host.dest)  # fmt: skip

    assert flooded.code == 0, flooded.err[-2000:]
    assert "the record of written-back models is full" in flooded.err
    record = host.source.root / "ollama-ramdisk-written-back.json"
    assert record.stat().st_size <= 1024 * 1024
    assert refill.code == 0, refill.err[-2000:]
    assert (host.dest / MANIFESTS / "mine/1").exists()  # still in `ollama list`
    assert "registry.ollama.ai/library/mine:1" in json.loads(record.read_text())["models"]
    assert after.code == 0, after.err[-2000:]
    assert "registry.ollama.ai/library/mine:1" in json.loads(record.read_text())["models"]


def test_a_record_of_130000_short_names_keeps_the_refill_and_the_write_back_quick(
    host: Host,
) -> None:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    names = ["".join(digits[i // 36**place % 36] for place in range(4)) for i in range(130_000)]
    record = host.source.root / "ollama-ramdisk-written-back.json"
    raw = json.dumps({"models": names}, separators=(",", ":"))
    assert len(raw) <= 1024 * 1024
    record.write_text(raw)  # as the disk store's owner writes it
    os.chown(record, UID, GID)

    refill = _reboot_and_refill(host)
    written = root_run("writeback", "--reserve", "0", "--source", host.source.root,
                       "--dest", host.dest, timeout=FLOOD_BOUND)  # fmt: skip

    assert refill.code == 0, refill.err[-2000:]
    assert written.code == 0, written.err[-2000:]
    assert max(refill.seconds, written.seconds) < FLOOD_BOUND
