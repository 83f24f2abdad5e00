"""The real parts the tests run: the Ollama server and engine that
`scripts/ensure-host.sh ollama` builds, its test models, and Docker's
distribution registry (`scripts/ensure-host.sh registry`), each started on a
free loopback port for one test and stopped after it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ensure_host_path(step: str) -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure-host.sh"), step],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"ensure-host.sh {step} failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def ollama_prefix() -> Path:
    return ensure_host_path("ollama")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return ensure_host_path("models")


def unpack_store(models_dir: Path, where: Path, kind: str) -> Path:
    """A test store archive (``store-KIND-*.tar``) unpacked as `ollama create` left it."""
    archive = next(models_dir.glob(f"store-{kind}-*.tar"))
    store = where / "models"
    store.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(store)  # noqa: S202 - our own archive
    return store


@pytest.fixture
def disk_store(models_dir: Path, tmp_path: Path) -> Path:
    """The small test store."""
    return unpack_store(models_dir, tmp_path / "disk", "small")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Ollama:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    prefix: Path

    def run(self, *argv: str) -> None:
        """The real `ollama` CLI against this server (create, cp, ...)."""
        done = subprocess.run(
            [str(self.prefix / "bin" / "ollama"), *argv],
            env={**os.environ, "OLLAMA_HOST": self.url},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"ollama {' '.join(argv)}: {done.stderr}"

    def create_tinyllama(self, gguf: Path, where: Path) -> None:
        modelfile = where / "Modelfile"
        modelfile.write_text(f"FROM {gguf}\nPARAMETER num_predict 8\n")
        self.run("create", "tinyllama:chat", "-f", str(modelfile))

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.url}{path}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"http://{self.url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return json.loads(response.read())

    def listed(self) -> set[str]:
        return {model["name"] for model in self.get("/api/tags")["models"]}

    def generate(self, model: str, **options: object) -> dict:
        body = {"model": model, "prompt": "Hello", "stream": False}
        body["options"] = {"num_predict": 1, **options}
        return self.post("/api/generate", body)

    def engines(self, pattern: str) -> list[str]:
        """Engines of this server (its children) whose command line matches
        ``pattern``: the Molecule instances beside the tests run engines with the
        same models, and the host sees their processes too."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid), "-f", "--", pattern],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return found.stdout.split()

    def engine_pmd_mapped(self, blob: Path) -> tuple[int, int]:
        """(bytes resident, bytes mapped with 2 MiB pages) of the file ``blob`` in the
        engines loading it (smaps Rss, ShmemPmdMapped)."""
        rss = pmd = 0
        for pid in self.engines(f"--model {blob}"):
            mapping = None
            for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                fields = line.split()
                if fields and "-" in fields[0] and len(fields) >= 5:
                    mapping = fields[5] if len(fields) > 5 else ""
                elif mapping == str(blob) and fields[0] == "Rss:":
                    rss += int(fields[1]) * 1024
                elif mapping == str(blob) and fields[0] == "ShmemPmdMapped:":
                    pmd += int(fields[1]) * 1024
        return rss, pmd

    def engine_maps(self, blob: str) -> set[str]:
        """Files the engine serving ``blob`` maps that hold it (resolved paths)."""
        paths: set[str] = set()
        for pid in self.engines(f"--model .*{blob}"):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                fields = line.split(None, 5)
                if len(fields) == 6 and blob in fields[5]:
                    paths.add(fields[5])
        return paths


@pytest.fixture
def serve(ollama_prefix: Path, tmp_path: Path) -> Iterator:
    started: list[Ollama] = []

    def start(store: Path) -> Ollama:
        url = f"127.0.0.1:{free_port()}"
        log = tmp_path / f"serve-{len(started)}.log"
        env = {**os.environ, "OLLAMA_HOST": url, "OLLAMA_MODELS": str(store), "HOME": str(tmp_path)}
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(ollama_prefix / "bin" / "ollama"), "serve"],
                env=env,
                stdout=output,
                stderr=output,
            )
        server = Ollama(url, process, log, ollama_prefix)
        started.append(server)
        for _ in range(200):
            try:
                server.get("/api/version")
                return server
            except OSError:
                assert process.poll() is None, log.read_text()[-3000:]
                time.sleep(0.05)
        pytest.fail(f"ollama serve did not answer: {log.read_text()[-3000:]}")

    yield start
    for server in started:
        server.process.terminate()
        server.process.wait(timeout=30)


# The registry's access log (combined format): client, method, path, status, bytes.
_ACCESS = re.compile(
    r'^(?P<client>[^ ]+) - - \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>[^ ]+) [^"]*" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)"
)


# Ollama's pull wants a blob's GET answered by a redirect or with a Location
# (server/download.go, up to v0.34 at least); distribution's filesystem storage
# answers 200. A Location of "?" resolves to the blob's own URL: Ollama then
# fetches the blob from the registry itself, in ranges. The README's mirror
# command sets the same.
MIRROR_HEADERS = '{Location: ["?"]}'


@dataclass
class Registry:
    """Docker's distribution registry on a loopback port, plain HTTP."""

    address: str
    data: Path
    log: Path
    process: subprocess.Popen[bytes] | None

    def requests(self) -> list[dict[str, str]]:
        """Every request of its access log, oldest first."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = _ACCESS.match(line)
            if match:
                found.append(match.groupdict())
        return found

    def blob_fetches(self) -> dict[str, int]:
        """Bytes of each blob's content sent (a digest's hex -> bytes).

        Ollama first GETs the blob's URL only to learn where to fetch it and
        closes that answer unread (what the log shows as sent then is the
        socket's buffer, not data the client took); the content then comes in
        ranges (206) from the URL it learnt (here the same, with ``?``).
        """
        sent: dict[str, int] = {}
        for entry in self.requests():
            path = entry["path"].split("?", 1)[0]
            if entry["method"] == "GET" and "/blobs/sha256:" in path and entry["status"] == "206":
                digest = path.rsplit("sha256:", 1)[1]
                sent[digest] = sent.get(digest, 0) + int(entry["bytes"])
        return sent

    def blob_data(self, hex_digest: str) -> Path:
        """Where the registry keeps a blob's bytes (its filesystem driver's layout)."""
        return self.data / f"docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def start(self) -> None:
        self.stop()
        config = self.data.parent / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.data}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.address}, secret: test-only, headers: {MIRROR_HEADERS}}}\n"
        )
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(ensure_host_path("registry")), "serve", str(config)],
                stdout=output,
                stderr=output,
            )
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=5):
                    return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                time.sleep(0.05)
        pytest.fail(f"the registry did not answer: {self.log.read_text()[-3000:]}")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A fresh, empty registry for one test."""
    where = tmp_path / "registry"
    where.mkdir()
    started = Registry(f"127.0.0.1:{free_port()}", where / "data", where / "access.log", None)
    started.start()
    yield started
    started.stop()
