"""SIZE values: a number of bytes, or a number with k, m, g or t (powers of 1024)."""

from __future__ import annotations

import math
import re
from decimal import Decimal

from .errors import InvalidOption

KIB = 1024
MIB = KIB**2
GIB = KIB**3
TIB = KIB**4
PAGE_SIZE = 4096
# The largest size the kernel and Ollama (int64) can express.
MAX_SIZE = 2**63 - 1

_UNITS = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": TIB}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def is_decimal(text: str, max_digits: int = 19) -> bool:
    """Whether ``text`` is 1 to ``max_digits`` ASCII digits: ``str.isdigit`` also
    takes ``²`` and other scripts' digits, which ``int`` refuses, and ``int``
    refuses more than 4300 digits."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


def parse_size(value: object, option: str = "size") -> int:
    """Bytes from a SIZE; InvalidOption names the option when it is not one."""
    if isinstance(value, bool):
        raise InvalidOption(f"{option}: expected a SIZE, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise InvalidOption(f"{option}: a size cannot be negative ({value})")
        if value > MAX_SIZE:
            raise InvalidOption(
                f"{option}: {shorten(value)} is larger than any size a host can have"
            )
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise InvalidOption(
            f"{option}: {value!r} is not a SIZE (bytes, or a number with k, m, g or t, e.g. 64g)"
        )
    number, unit = match.groups()
    # Decimal, not float: a 400-digit number must be refused, not overflow.
    size = math.ceil(Decimal(number) * _UNITS[unit.lower()])
    if size > MAX_SIZE:
        raise InvalidOption(f"{option}: {shorten(value)} is larger than any size a host can have")
    return size


def shorten(value: object, limit: int = 40) -> str:
    """A value for a message: long numbers cut, so an error stays one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}... ({len(text)} characters)"


def format_size(size_bytes: int) -> str:
    """The largest exact k/m/g form, as fstab and tmpfs accept it."""
    for suffix, unit in (("g", GIB), ("m", MIB), ("k", KIB)):
        if size_bytes and size_bytes % unit == 0:
            return f"{size_bytes // unit}{suffix}"
    return str(size_bytes)


def human(size_bytes: float) -> str:
    """A short reading for people: 1.5 GiB, 300 MiB."""
    value = float(size_bytes)
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    return f"{value:.1f} TiB"


def round_up(size_bytes: int, unit: int) -> int:
    """Round up to a whole number of units (pages, MiB)."""
    return -(-size_bytes // unit) * unit
