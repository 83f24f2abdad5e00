"""pull's and push's options, refused before anything is read or fetched (no
registry or Ollama needed: these run on every Python of `make compat` too)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--mirror", "http://mirror:5000"], "give host or host:port, no scheme or path"),
        (["--mirror", "mirror:5000/v2"], "give host or host:port, no scheme or path"),
        (["--insecure"], "insecure and CA file need a mirror address"),
    ],
)
def test_a_bad_mirror_setting_is_refused_before_anything(
    cli, tmp_path: Path, argv: list[str], said: str
) -> None:
    run = cli("pull", "--source", tmp_path, *argv, "mistral:7b")
    assert run.code == 2
    assert said in run.err


def test_push_needs_a_mirror_and_a_model(cli, tmp_path: Path) -> None:
    assert "--mirror is required" in cli("push", "--source", tmp_path, "mistral:7b").err
    run = cli("push", "--source", tmp_path, "--mirror", "mirror:5000")
    assert run.code == 2
    assert "name at least one MODEL to push" in run.err


def test_a_ca_file_with_an_insecure_mirror_is_refused(cli, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read\n")
    run = cli(
        "pull", "--source", tmp_path, "--mirror", "m:5000", "--insecure", "--ca-file", ca, "m"
    )
    assert run.code == 2
    assert "a CA file is for HTTPS; an insecure mirror speaks plain HTTP" in run.err
