"""What the testinfra verifiers of every scenario share.

The expectations are computed here, independently of the product: model names
follow Ollama's rules, the RAM disk's size follows the sizing contract of
DESIGN.md, and stores are compared file by file with their own hashes. The
model sets come from the scenario's inventory, as the playbooks read them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import pytest

T = TypeVar("T")

DISK_STORE = "/usr/share/ollama/.ollama/models"
FIXTURE_STATE = "/var/lib/ollama-fixture"
CLI = "/usr/local/sbin/ollama-ramdisk"
CONFIG = "/etc/ollama-ramdisk/config.json"
DROPIN_DIR = "/etc/systemd/system/ollama.service.d"
DROPIN = f"{DROPIN_DIR}/ollama-ramdisk.conf"
SYSCTL_FILE = "/etc/sysctl.d/60-ollama.conf"
API = "http://127.0.0.1:11434"
PAGE = 4096
MIB = 1024 * 1024
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"

# Run on the instance: every manifest and blob of a store, hashed, with owners.
SNAPSHOT = r"""
import hashlib, json, os, stat, sys
root = sys.argv[1]
result = {"exists": os.path.isdir(root), "manifests": {}, "blobs": {}, "other": []}
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
for dirpath, dirnames, filenames in os.walk(root):
    for name in filenames:
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, root)
        st = os.lstat(path)
        entry = {"uid": st.st_uid, "gid": st.st_gid, "ino": st.st_ino, "mode": st.st_mode & 0o7777,
                 "link": os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
                 "regular": stat.S_ISREG(st.st_mode)}
        try:
            target = os.stat(path)
            entry["size"] = target.st_size
            # A FIFO or device planted by a test would block the read: never open one.
            entry["sha256"] = digest(path) if stat.S_ISREG(target.st_mode) else None
        except OSError:
            entry["size"], entry["sha256"] = None, None
        if rel.startswith("manifests" + os.sep):
            with open(path, "rb") as f:
                entry["text"] = f.read().decode("utf-8", "replace")
            result["manifests"][rel] = entry
        elif rel.startswith("blobs" + os.sep) and os.sep not in rel[len("blobs") + 1:]:
            result["blobs"][name] = entry
        else:
            result["other"].append(rel)
print(json.dumps(result))
"""


@dataclass(frozen=True)
class Name:
    """A model reference split the way Ollama splits it (types/model/name.go)."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, reference: str) -> Name:
        rest = reference.split("://", 1)[-1]
        tag = "latest"
        if rest.rfind(":") > rest.rfind("/"):
            rest, tag = rest.rsplit(":", 1)
        parts = rest.split("/")
        namespace = parts[-2] if len(parts) > 1 else DEFAULT_NAMESPACE
        host = "/".join(parts[:-2]) if len(parts) > 2 else DEFAULT_HOST
        return cls(host, namespace, parts[-1], tag)

    @property
    def manifest(self) -> str:
        return f"manifests/{self.host}/{self.namespace}/{self.model}/{self.tag}"

    @property
    def display(self) -> str:
        """As `ollama list` and /api/tags name it."""
        if self.host.lower() == DEFAULT_HOST:
            if self.namespace.lower() == DEFAULT_NAMESPACE:
                return f"{self.model}:{self.tag}"
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def qualified(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def spellings(self) -> set[str]:
        """Every way a log line may name this model."""
        return {
            self.display,
            self.qualified,
            f"{self.host}/{self.namespace}/{self.model}/{self.tag}",
        }


def names(references: Iterable[str]) -> list[Name]:
    """Parsed and deduplicated, in order (llama3.1 and llama3.1:latest are one model)."""
    result: list[Name] = []
    for reference in references:
        name = Name.parse(str(reference))
        if name not in result:
            result.append(name)
    return result


@dataclass
class Store:
    """A snapshot of a model store on the instance."""

    root: str
    exists: bool
    manifests: dict[str, dict[str, Any]]
    blobs: dict[str, dict[str, Any]]
    other: list[str]

    def layers(self, name: Name) -> list[dict[str, Any]]:
        """The config and layers of a model's manifest in this store."""
        manifest = json.loads(self.manifests[name.manifest]["text"])
        return [manifest["config"], *manifest["layers"]]

    def blob_names(self, name: Name) -> list[str]:
        return [layer["digest"].replace(":", "-", 1) for layer in self.layers(name)]


def snapshot(host: Any, root: str) -> Store:
    result = host.run("python3 -c %s %s", SNAPSHOT, root)
    assert result.rc == 0, result.stderr
    data = json.loads(result.stdout)
    return Store(root, data["exists"], data["manifests"], data["blobs"], data["other"])


def plan_size(disk: Store, hot: list[Name], headroom: float) -> int:
    """The RAM disk size of DESIGN.md's contract, computed from the disk store."""
    files: dict[str, int] = {}
    for name in hot:
        for layer in disk.layers(name):
            files[layer["digest"]] = int(layer["size"])
    sizes = list(files.values()) + [disk.manifests[n.manifest]["size"] for n in hot]
    tmpfs_bytes = sum(-(-size // PAGE) * PAGE for size in sizes)
    return max(1, math.ceil(tmpfs_bytes * headroom / MIB)) * MIB


def fstab_size(value: str) -> int:
    units = {"k": 1, "m": 2, "g": 3, "t": 4}
    match = re.fullmatch(r"([0-9]+)([kmgt]?)", value.lower())
    assert match, f"size={value} is not a number of bytes or a number with k, m, g or t"
    return int(match.group(1)) * 1024 ** units.get(match.group(2), 0)


def fstab_entries(host: Any, path: str) -> list[list[str]]:
    """The /etc/fstab lines that mount something at path, split in fields."""
    lines = host.file("/etc/fstab").content_string.splitlines()
    fields = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [f for f in fields if len(f) >= 2 and f[1].rstrip("/") == path.rstrip("/")]


def live_mount(host: Any, path: str) -> dict[str, Any] | None:
    result = host.run(
        "findmnt --json --bytes --output TARGET,FSTYPE,SIZE,OPTIONS --mountpoint %s", path
    )
    if result.rc != 0:
        return None
    return json.loads(result.stdout)["filesystems"][-1]


def api(host: Any, path: str) -> dict[str, Any]:
    script = (
        "import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    )
    result = host.run("python3 -c %s %s", script, API + path)
    assert result.rc == 0, f"GET {path} failed: {result.stderr}"
    return json.loads(result.stdout)


def post(host: Any, path: str, body: dict[str, Any], timeout: int = 120) -> dict[str, Any]:
    """POST a JSON body to the real server's API from inside the instance."""
    script = (
        "import json, sys, urllib.request; "
        "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), "
        "headers={'Content-Type': 'application/json'}); "
        f"print(urllib.request.urlopen(request, timeout={timeout}).read().decode())"
    )
    result = host.run("python3 -c %s %s %s", script, API + path, json.dumps(body))
    assert result.rc == 0, f"POST {path} {body} failed: {result.stderr}"
    return json.loads(result.stdout)


def generate(host: Any, model: str, **options: Any) -> dict[str, Any]:
    """One token from the model: it loads in the real engine and answers."""
    body = {"model": model, "prompt": "Hello", "stream": False}
    body["options"] = {"num_predict": 1, **options}
    answer = post(host, "/api/generate", body)
    assert answer.get("done"), f"{model} did not answer: {answer}"
    return answer


def listed_models(host: Any) -> set[str]:
    return {model["name"] for model in api(host, "/api/tags")["models"]}


def wait_for(what: str, check: Callable[[], T | None], seconds: float, every: float = 1.0) -> T:
    """Poll ``check`` until it returns something, at most ``seconds``; fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(every)


def state_time(host: Any, name: str) -> float:
    """A time a side effect noted (``date +%s`` in the fixture's state directory)."""
    return float(host.file(f"{FIXTURE_STATE}/{name}").content_string.split()[0])


def instance_time(host: Any) -> float:
    return float(host.run("date +%s.%N").stdout.strip())


def loaded_models(host: Any) -> dict[str, dict[str, Any]]:
    """What the server has loaded (/api/ps), by name."""
    return {model["name"]: model for model in api(host, "/api/ps")["models"]}


def assert_preloaded_since(
    host: Any, hostvars: dict[str, Any], since: float, seconds: float
) -> None:
    """Every preload model is in /api/ps within ``seconds`` of ``since``, kept until evicted."""
    wanted = {Name.parse(model).display for model in hostvars["ollama_service_preload"]}

    def loaded() -> dict[str, Any] | None:
        models = loaded_models(host) if host.service("ollama.service").is_running else {}
        return models if wanted <= set(models) else None

    models = wait_for(
        "the preload models in /api/ps", loaded, since + seconds - instance_time(host)
    )
    # keep_alive -1: loaded until evicted, which Ollama shows as an expiry centuries ahead.
    assert all(int(models[name]["expires_at"][:4]) > 2100 for name in wanted)


def unit_journal(host: Any, unit: str) -> str:
    """Every line the unit wrote since the instance was created (all its runs)."""
    return host.run("journalctl --no-pager --output cat --unit %s", unit).stdout


def unit_property(host: Any, unit: str, prop: str) -> str:
    return host.run("systemctl show --property=%s --value %s", prop, unit).stdout.strip()


# Run on the instance: the shmem (tmpfs) bytes charged to a process's memory cgroup, v1 or v2.
CGROUP_SHMEM = r"""
import sys
pid = sys.argv[1]
for line in open(f"/proc/{pid}/cgroup"):
    hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
    if hierarchy == "0" and controllers == "":
        base = "/sys/fs/cgroup" + path
    elif "memory" in controllers.split(","):
        base = "/sys/fs/cgroup/memory" + path
    else:
        continue
    stat = dict(l.split() for l in open(base + "/memory.stat"))
    print(base, stat.get("shmem", stat.get("total_shmem")))
    break
"""


def service_cgroup_shmem(host: Any, unit: str = "ollama.service") -> tuple[str, int]:
    """(cgroup directory, tmpfs bytes charged to it) of the unit's main process."""
    pid = unit_property(host, unit, "MainPID")
    result = host.run("python3 -c %s %s", CGROUP_SHMEM, pid)
    assert result.rc == 0, result.stderr
    path, shmem = result.stdout.split()
    return path, int(shmem)


def written_back(host: Any) -> list[Name]:
    """Models the write-back recorded in the disk store (populate keeps them as cold)."""
    record = host.file(f"{DISK_STORE}/ollama-ramdisk-written-back.json")
    if not record.exists:
        return []
    return [Name.parse(model) for model in json.loads(record.content_string)["models"]]


def cli_listed_models(host: Any) -> set[str]:
    """What `ollama list` prints, first column (the real CLI against the real server)."""
    result = host.run("ollama list")
    assert result.rc == 0, result.stderr
    return {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}


def model_blob(store: Store, name: Name) -> str:
    """The blob holding a model's weights (media type ...image.model)."""
    layers = [layer for layer in store.layers(name) if layer["mediaType"].endswith(".model")]
    assert len(layers) == 1, f"{name.display} has {len(layers)} weight layers"
    return str(layers[0]["digest"]).replace(":", "-", 1)


def engine_files(host: Any, blob: str) -> tuple[list[str], list[str]]:
    """The llama-server engine serving ``blob``: the files it maps that hold the
    blob (resolved paths, as /proc/PID/maps shows them) and its open files."""
    pids = host.run("pgrep -f -- '--model .*%s'", blob).stdout.split()
    assert pids, f"no llama-server runs with {blob}"
    maps = host.run("cat /proc/%s/maps", pids[0]).stdout
    mapped = sorted({line.split(None, 5)[5] for line in maps.splitlines()
                     if blob in line and len(line.split(None, 5)) == 6})  # fmt: skip
    fds = host.run("ls -l /proc/%s/fd", pids[0]).stdout
    opened = sorted({line.rsplit(" -> ", 1)[1] for line in fds.splitlines()
                     if blob in line and " -> " in line})  # fmt: skip
    return mapped, opened


def assert_loads_from(host: Any, store: Store, name: Name, where: str) -> None:
    """A generate with mmap on (the default on GPU hosts): the engine maps the
    model's weights from ``where`` (the tmpfs for hot models, the disk store
    through the link for cold ones), and nothing else."""
    blob = model_blob(store, name)
    generate(host, name.display, use_mmap=True)
    mapped, opened = engine_files(host, blob)
    assert mapped or opened, f"{name.display}: the engine has {blob} neither mapped nor open"
    for path in mapped + opened:
        assert path == f"{where}/blobs/{blob}", f"{name.display}: the engine reads {path}"


def service_env(host: Any) -> dict[str, str]:
    """The environment of ollama.service's running main process."""
    pid = host.run("systemctl show --property=MainPID --value ollama.service").stdout.strip()
    assert pid not in ("", "0"), "ollama.service has no main process"
    raw = host.run("cat /proc/%s/environ", pid)
    assert raw.rc == 0, raw.stderr
    return dict(item.split("=", 1) for item in raw.stdout.split("\0") if "=" in item)


def journal(host: Any, unit: str = "ollama.service") -> str:
    """The journal of the unit's current run, ExecStartPre included.

    Test instances share the machine's kernel, and with it the boot ID, so
    `journalctl --boot` would span reboots: the invocation ID does not.
    """
    invocation = host.run("systemctl show --property=InvocationID --value %s", unit).stdout.strip()
    assert invocation, f"{unit} has not run"
    return host.run(
        "journalctl --no-pager --output cat _SYSTEMD_INVOCATION_ID=%s", invocation
    ).stdout


def assert_ram_disk_serves(
    host: Any, ram: Store, disk: Store, hot: list[Name], cold: list[Name]
) -> None:
    """Hot models copied byte for byte and owned by ollama, cold ones linked to disk."""
    ollama = host.user("ollama")
    hot_blobs = {blob for name in hot for blob in disk.blob_names(name)}
    for name in hot + cold:
        assert name.manifest in ram.manifests, f"{name.display}: no manifest in the RAM disk"
        ram_manifest = ram.manifests[name.manifest]
        assert ram_manifest["sha256"] == disk.manifests[name.manifest]["sha256"], (
            f"{name.manifest} differs"
        )
        assert ram_manifest["uid"] == ollama.uid, f"{name.manifest} is not owned by ollama"
    for blob in sorted(hot_blobs):
        entry = ram.blobs.get(blob)
        assert entry is not None, f"hot blob {blob} is missing from the RAM disk"
        assert entry["regular"], f"hot blob {blob} is not a regular file (link: {entry['link']})"
        assert entry["sha256"] == disk.blobs[blob]["sha256"] == blob.split("-", 1)[1], (
            f"{blob} differs"
        )
        assert (entry["uid"], entry["gid"]) == (ollama.uid, ollama.gid), (
            f"{blob} is not owned by ollama"
        )
    for name in cold:
        for blob in disk.blob_names(name):
            if blob in hot_blobs:
                continue
            entry = ram.blobs.get(blob)
            assert entry is not None, (
                f"cold blob {blob} of {name.display} is missing from the RAM disk"
            )
            assert entry["link"] == f"{disk.root}/blobs/{blob}", (
                f"cold blob {blob} is not linked to disk"
            )
            assert entry["sha256"] == blob.split("-", 1)[1], f"cold blob {blob} does not resolve"


def assert_no_stray_blobs(ram: Store) -> None:
    """Ollama prunes blobs no manifest references: there must be none."""
    referenced = {
        layer["digest"].replace(":", "-", 1)
        for entry in ram.manifests.values()
        for layer in [json.loads(entry["text"])["config"], *json.loads(entry["text"])["layers"]]
    }
    stray = sorted(set(ram.blobs) - referenced)
    assert not stray, f"blobs no manifest references (Ollama would prune them): {stray}"


@pytest.fixture(scope="module")
def hostvars(host: Any) -> dict[str, Any]:
    """The instance's inventory variables (group_vars and host_vars), as the playbooks see them."""
    variables: dict[str, Any] = host.ansible.get_variables()
    return variables


@pytest.fixture(scope="module")
def ram_path(hostvars: dict[str, Any]) -> str:
    return str(hostvars.get("ollama_ramdisk_path", "/mnt/ollama"))


@pytest.fixture(scope="module")
def disk(host: Any) -> Store:
    return snapshot(host, DISK_STORE)


@pytest.fixture(scope="module")
def ram(host: Any, ram_path: str) -> Store:
    return snapshot(host, f"{ram_path}/models")


def _model_set(request: pytest.FixtureRequest, hostvars: dict[str, Any], kind: str) -> list[Name]:
    """The set site.yml applied, or under tests/refreshed/ (the steps after
    refresh-models.yml) the refreshed one."""
    if "refreshed" in request.path.parts:
        return names(hostvars[f"fixture_refresh_{kind}"])
    return names(hostvars.get(f"ollama_ramdisk_{kind}", []))


@pytest.fixture(scope="module")
def hot(request: pytest.FixtureRequest, hostvars: dict[str, Any]) -> list[Name]:
    return _model_set(request, hostvars, "models")


@pytest.fixture(scope="module")
def cold(request: pytest.FixtureRequest, hostvars: dict[str, Any]) -> list[Name]:
    return _model_set(request, hostvars, "cold_models")


@pytest.fixture(scope="module")
def fixture_record(host: Any) -> dict[str, Any]:
    """What prepare wrote to the disk store: model -> manifest hash and blobs."""
    record: dict[str, Any] = json.loads(host.file(f"{FIXTURE_STATE}/store.json").content_string)
    return record


# ---------------------------------------------------------------- metrics

TEXTFILE = "/var/lib/prometheus/node-exporter/ollama_ramdisk.prom"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line of a text exposition."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group(2) or ""))
            found.append((match.group(1), labels, float(match.group(3))))
    return found


Samples = list[tuple[str, dict[str, str], float]]


def sample(found: Samples, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``; None when there is none."""
    wanted = labels.items()
    values = [value for metric, got, value in found if metric == name and wanted <= got.items()]
    assert len(values) <= 1, (name, labels, values)
    return values[0] if values else None


def textfile_samples(host: Any) -> list[tuple[str, dict[str, str], float]]:
    textfile = host.file(TEXTFILE)
    return samples(textfile.content_string) if textfile.exists else []


def scraped_samples(host: Any) -> list[tuple[str, dict[str, str], float]]:
    """What node_exporter serves on its /metrics now."""
    scraped = host.run("curl --silent --show-error --max-time 10 http://127.0.0.1:9100/metrics")
    assert scraped.rc == 0, scraped.stderr
    return samples(scraped.stdout)
