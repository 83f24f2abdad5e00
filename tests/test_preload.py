"""preload's input rules (its work against the real server: tests/test_real_ollama.py)."""

from __future__ import annotations

import pytest
from ollama_ramdisk.errors import InvalidInput, InvalidOption
from ollama_ramdisk.preload import api_base, preload


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("http://10.1.2.3:11434", "http://10.1.2.3:11434"),
        ("https://ollama.internal", "https://ollama.internal:11434"),
        ("[::1]:11500", "http://[::1]:11500"),
        ("[::]:11434", "http://127.0.0.1:11434"),
        ("localhost:11434/", "http://localhost:11434"),
    ],
)
def test_the_api_address_is_read_as_ollama_reads_ollama_host(host: str | None, url: str) -> None:
    assert api_base(host) == url


@pytest.mark.parametrize("host", ["ftp://x:1", "127.0.0.1:99999", "127.0.0.1:port"])
def test_a_bad_address_exits_2_naming_it(host: str) -> None:
    with pytest.raises(InvalidOption, match="host"):
        api_base(host)


def test_bad_models_and_options_are_refused_before_any_request() -> None:
    with pytest.raises(InvalidOption, match="no models"):
        preload([], host="127.0.0.1:1")
    with pytest.raises(InvalidInput):
        preload(["../../etc/shadow"], host="127.0.0.1:1")
    with pytest.raises(InvalidOption, match="retries"):
        preload(["llama3.1:8b"], host="127.0.0.1:1", retries=0)
    with pytest.raises(InvalidOption, match="keep_alive"):
        preload(["llama3.1:8b"], host="127.0.0.1:1", keep_alive=True)
