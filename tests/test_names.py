"""Model references are parsed by Ollama's rules and rejected before any path exists."""

from __future__ import annotations

import posixpath
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ollama_ramdisk.errors import InputProblems, InvalidName
from ollama_ramdisk.names import ModelName, parse_name, parse_names


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("llama3", ("registry.ollama.ai", "library", "llama3", "latest")),
        ("llama3.1:70b", ("registry.ollama.ai", "library", "llama3.1", "70b")),
        ("hf.co/user/repo:Q4_K_M", ("hf.co", "user", "repo", "Q4_K_M")),
        ("localhost:5000/ns/m:t", ("localhost:5000", "ns", "m", "t")),
        ("https://host/ns/m:t", ("host", "ns", "m", "t")),
        ("acme/embedder", ("registry.ollama.ai", "acme", "embedder", "latest")),
        ("_private/model_1:v1.0-rc", ("registry.ollama.ai", "_private", "model_1", "v1.0-rc")),
        ("qwen2.5-coder:7b-instruct-q4_K_M", ("registry.ollama.ai", "library", "qwen2.5-coder",
                                              "7b-instruct-q4_K_M")),
        ("Registry.Example.COM/Team/Model:Tag", ("Registry.Example.COM", "Team", "Model", "Tag")),
        ("m" * 80 + ":" + "t" * 80, ("registry.ollama.ai", "library", "m" * 80, "t" * 80)),
        ("h" * 350 + "/n/m", ("h" * 350, "n", "m", "latest")),
    ],
)  # fmt: skip
def test_valid_ollama_forms_parse_with_defaults(reference: str, parts: tuple[str, ...]) -> None:
    name = parse_name(reference)

    assert (name.host, name.namespace, name.model, name.tag) == parts
    assert name.manifest_relpath == "manifests/" + "/".join(parts)


def test_short_name_leaves_out_only_the_default_host_and_namespace() -> None:
    assert parse_name("llama3").short == "llama3:latest"
    assert parse_name("acme/embedder").short == "registry.ollama.ai/acme/embedder:latest"
    assert parse_name("hf.co/u/r:q").short == "hf.co/u/r:q"
    assert parse_name("llama3").qualified == "registry.ollama.ai/library/llama3:latest"


def test_case_is_kept_but_folded_for_comparison() -> None:
    upper, lower = parse_name("Llama3:8B"), parse_name("llama3:8b")

    assert upper != lower
    assert upper.folded() == lower.folded()
    assert upper.manifest_relpath.endswith("Llama3/8B")


@pytest.mark.parametrize(
    ("reference", "fault"),
    [
        ("../x", "'..'"),
        ("a/b/c/d", "'a/b'"),
        ("m;rm -rf /", "'m;rm -rf '"),
        ("x%y", "'x%y'"),
        ("llama 3", "'llama 3'"),
        ("llama3\n", "'llama3\\n'"),
        ("llama3:8b\nevil", "'8b\\nevil'"),
        ("\n", "'\\n'"),
        ("", "empty"),
        (":tag", "model part ''"),
        ("model:", "tag part ''"),
        ("/model", "namespace part ''"),
        ("ns//model", "namespace part ''"),
        ("na.me/model", "namespace part 'na.me'"),
        ("a:b:c", "model part 'a:b'"),
        (".hidden", "model part '.hidden'"),
        ("-dash", "model part '-dash'"),
        ("m" * 81, "81 characters"),
        ("m:" + "t" * 81, "81 characters"),
        ("n" * 81 + "/m", "81 characters"),
        ("h" * 351 + "/n/m", "351 characters"),
        ("modèle", "'modèle'"),
        ("m\x00", "'m\\x00'"),
    ],
)
def test_invalid_references_are_rejected_naming_the_part(reference: str, fault: str) -> None:
    with pytest.raises(InvalidName) as caught:
        parse_name(reference)

    assert caught.value.exit_code == 2
    assert fault in str(caught.value)


@pytest.mark.parametrize("reference", [None, 42, ["llama3"], b"llama3"])
def test_a_reference_that_is_not_a_string_is_invalid(reference: object) -> None:
    with pytest.raises(InvalidName, match="must be a string"):
        parse_name(reference)


def test_every_bad_name_of_a_list_is_reported_together() -> None:
    with pytest.raises(InputProblems) as caught:
        parse_names(["llama3", "../x", "good:tag", "x%y", "a/b/c/d"])

    assert [str(problem).split(":")[0] for problem in caught.value.problems] == [
        "invalid model name '../x'",
        "invalid model name 'x%y'",
        "invalid model name 'a/b/c/d'",
    ]
    assert caught.value.exit_code == 2


def test_a_list_of_good_names_keeps_its_order() -> None:
    names = parse_names(["b:1", "a", "hf.co/u/r:q"])

    assert [name.short for name in names] == ["b:1", "a:latest", "hf.co/u/r:q"]


# ---------------------------------------------------------------- properties

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_REST = _FIRST + "-"


def _part(rest: str, max_size: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda first, tail: first + tail,
        st.sampled_from(_FIRST),
        st.text(alphabet=rest, max_size=max_size - 1),
    )


HOSTS = _part(_REST + ".:", 350)
NAMESPACES = _part(_REST, 80)
MODELS = _part(_REST + ".", 80)
TAGS = _part(_REST + ".", 80)

# Each part by Ollama's rules, written independently of names.py.
PART_RULES = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}\Z"),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}\Z"),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}\Z"),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}\Z"),
}


def _assert_safe_relpath(name: ModelName) -> None:
    relpath = name.manifest_relpath
    components = relpath.split("/")
    assert components[0] == "manifests"
    assert len(components) == 5
    assert ".." not in components
    assert posixpath.normpath(relpath) == relpath


@given(host=HOSTS, namespace=NAMESPACES, model=MODELS, tag=TAGS)
def test_valid_parts_round_trip_to_a_path_under_manifests(
    host: str, namespace: str, model: str, tag: str
) -> None:
    name = parse_name(f"{host}/{namespace}/{model}:{tag}")

    assert (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag)
    assert parse_name(name.qualified) == name
    _assert_safe_relpath(name)


@given(namespace=NAMESPACES, model=MODELS)
def test_omitted_parts_take_ollamas_defaults(namespace: str, model: str) -> None:
    name = parse_name(f"{namespace}/{model}")

    assert (name.host, name.namespace, name.model, name.tag) == (
        "registry.ollama.ai",
        namespace,
        model,
        "latest",
    )


SUSPICIOUS = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("aZ9_-.:/%; \n\t\\\x00~*$`'\"")),
        st.characters(),
    ),
    max_size=60,
)


@given(SUSPICIOUS)
def test_any_text_is_rejected_or_yields_parts_within_the_rules(reference: str) -> None:
    try:
        name = parse_name(reference)
    except InvalidName:
        return  # any other exception fails the test
    for kind in ("host", "namespace", "model", "tag"):
        assert PART_RULES[kind].match(getattr(name, kind)), (kind, name)
    _assert_safe_relpath(name)
