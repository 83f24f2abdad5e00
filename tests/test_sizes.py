"""SIZE values: bytes or a number with k, m, g or t, in powers of 1024."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ollama_ramdisk.errors import InvalidOption
from ollama_ramdisk.sizes import GIB, KIB, MIB, TIB, format_size, human, parse_size, round_up


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("1k", KIB),
        ("1K", KIB),
        ("10m", 10 * MIB),
        ("64g", 64 * GIB),
        ("2t", 2 * TIB),
        ("1.5g", 3 * GIB // 2),
        (" 8g ", 8 * GIB),
        ("64GiB", 64 * GIB),
        ("512mb", 512 * MIB),
        (12345, 12345),
    ],
)
def test_sizes_are_bytes_or_powers_of_1024(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_a_fractional_size_rounds_up_to_a_whole_byte() -> None:
    assert parse_size("0.1k") == 103


@pytest.mark.parametrize("text", ["", "g", "-1", "1x", "1e9", "inf", "nan", "1 g b", "1.g", "0x10"])
def test_text_that_is_not_a_size_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(InvalidOption, match=r"^--reserve: .* is not a SIZE") as caught:
        parse_size(text, option="--reserve")

    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", [True, False, -5])
def test_booleans_and_negative_numbers_are_not_sizes(value: object) -> None:
    with pytest.raises(InvalidOption, match="reserve"):
        parse_size(value, option="reserve")


@pytest.mark.parametrize(
    ("size", "text"),
    [(KIB, "1k"), (MIB, "1m"), (3 * GIB, "3g"), (1536 * MIB, "1536m"), (1000, "1000"), (0, "0")],
)
def test_format_size_gives_the_largest_exact_fstab_unit(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=1 << 50))
def test_formatted_sizes_parse_back_to_the_same_bytes(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.integers(min_value=0, max_value=1 << 50), st.sampled_from([4096, MIB]))
def test_round_up_gives_the_smallest_multiple_not_below(size: int, unit: int) -> None:
    rounded = round_up(size, unit)

    assert rounded % unit == 0
    assert size <= rounded < size + unit


@pytest.mark.parametrize(
    ("size", "text"),
    [(512, "512 B"), (1536, "1.5 KiB"), (300 * MIB, "300.0 MiB"), (int(1.5 * GIB), "1.5 GiB"),
     (2 * TIB, "2.0 TiB")],
)  # fmt: skip
def test_human_sizes_read_in_binary_units(size: int, text: str) -> None:
    assert human(size) == text
