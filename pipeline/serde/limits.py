"""How much one input record may claim, and how a failure shows what a record held.

The input topic is written by other teams, so every count and length in a record is hostile until checked:
a few bytes can claim a shape of 2**62 elements, a text can fill the whole record, an array or a map can
hold as many items as the record has bytes. Each cap has an error code of its own, so a producer that
hits one learns which from the error event: ``TOO_LARGE`` (``max_message_bytes``, checked by the codec
before any decode work), ``TENSOR_TOO_LARGE`` (``max_tensor_elements``), ``TEXT_TOO_LONG``
(``max_text_chars``, any string field) and ``TOO_MANY_ITEMS`` (``max_items``, the items of all arrays and
maps of a record together: counted on the bytes before decoding by :mod:`pipeline.serde.item_count`).
The checks themselves never build a number or a string larger than a few words: a product of dimensions
stops as soon as it passes its cap, and a value shown in a message is cut short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import ValidationError

if TYPE_CHECKING:
    from pipeline.config import Settings

SHOWN_BYTES = 16
"""How many bytes of a record an error message shows, in hex: enough for both headers and a field or two."""
SHOWN_CHARS = 64
"""How much of a string a record gave an error message repeats."""
_PRODUCT_SHOWN_MAX = 2**64
"""Past this a shape's element count is said to be "more than" it: the exact number would be a big integer
(one with 4,300 digits and more cannot even be printed), and nobody needs it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps a request must meet; the defaults are those of :class:`~pipeline.config.Settings`."""

    max_tensor_elements: int = 16_777_216
    max_text_chars: int = 100_000
    max_items: int = 10_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_tensor_elements, settings.max_text_chars, settings.max_items)


DEFAULT_LIMITS = Limits()


def show_bytes(data: bytes | bytearray | memoryview | None, n: int = SHOWN_BYTES) -> str:
    """A record's length and first ``n`` bytes in hex, as error messages show what they saw."""
    if data is None:
        return "no value"
    head = bytes(data[:n]).hex(" ")
    return f"{len(data):,} bytes: {head}{' ...' if len(data) > n else ''}"


def shown(value: object, n: int = SHOWN_CHARS) -> str:
    """``repr`` of a value a record gave, cut short: a hostile value must not make a message (or the dead
    letter's headers, which repeat it) as large as the record."""
    if isinstance(value, str):
        return repr(value) if len(value) <= n else f"{value[:n]!r}... ({len(value):,} chars)"
    if isinstance(value, bytes | bytearray | memoryview):
        return show_bytes(value, n // 4)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < _PRODUCT_SHOWN_MAX else f"an integer of {value.bit_length():,} bits"
    if isinstance(value, list | tuple):
        items = ", ".join(shown(v, n // 4) for v in value[:8])
        return f"[{items}]" if len(value) <= 8 else f"[{items}, ... ({len(value):,} items)]"
    text = repr(value)
    return text if len(text) <= n else f"{text[:n]}..."


def too_long(where: str, value: str, limits: Limits, event_id: str | None) -> ValidationError:
    return ValidationError(
        ErrorCode.TEXT_TOO_LONG,
        f"{where}: {len(value):,} chars, max_text_chars is {limits.max_text_chars:,}",
        event_id=event_id,
    )


def too_many(
    where: str, count: int, what: str, limits: Limits, event_id: str | None, total: int | None = None
) -> ValidationError:
    """``count`` items in the array or map at ``where``, ``total`` in the record's arrays and maps together
    (the cap is on the total: each array or map alone counts when it passes it by itself)."""
    others = f" ({total:,} with the record's other arrays and maps)" if total is not None and total != count else ""
    return ValidationError(
        ErrorCode.TOO_MANY_ITEMS,
        f"{where}: {count:,} {what}{others}, max_items is {limits.max_items:,}",
        event_id=event_id,
    )


def check_text(where: str, value: Any, limits: Limits, event_id: str | None) -> None:
    """A string field within ``max_text_chars`` (anything else is the schema's or another rule's business)."""
    if value.__class__ is str and len(value) > limits.max_text_chars:
        raise too_long(where, value, limits, event_id)


def check_envelope(datum: Any, limits: Limits, event_id: str | None) -> int:
    """The request's fields around its payload: every string within ``max_text_chars``, the attributes
    within ``max_items`` entries; returns how many entries they are (the record's items so far)."""
    max_chars = limits.max_text_chars
    for name in ("source", "correlation_id", "tenant"):
        value = datum.get(name)
        if value.__class__ is str and len(value) > max_chars:
            raise too_long(name, value, limits, event_id)
    model = datum.get("model")
    if isinstance(model, dict):
        for name in ("name", "version"):
            value = model.get(name)
            if value.__class__ is str and len(value) > max_chars:
                raise too_long(f"model.{name}", value, limits, event_id)
    attributes = datum.get("attributes")
    if not attributes or not isinstance(attributes, dict):
        return 0
    if len(attributes) > limits.max_items:
        raise too_many("attributes", len(attributes), "entries", limits, event_id)
    for key, value in attributes.items():
        if key.__class__ is str and len(key) > max_chars:
            raise too_long(f"attributes key {shown(key)}", key, limits, event_id)
        if value.__class__ is str and len(value) > max_chars:
            raise too_long(f"attributes[{shown(key)}]", value, limits, event_id)
    return len(attributes)


def check_extent(where: str, shape: Sequence[int], limits: Limits, event_id: str | None) -> int:
    """The element count of a well-formed ``shape`` (non-negative ints) within ``max_tensor_elements``
    elements; returns it (see :func:`element_count`)."""
    elements = element_count(shape, limits.max_tensor_elements)
    if elements is None:
        raise tensor_too_large(where, shape, limits, event_id)
    return elements


def element_count(shape: Sequence[int], cap: int) -> int | None:
    """The element count of a well-formed ``shape`` (non-negative ints), or None when it spans more than
    ``cap`` elements.

    A zero dimension makes a tensor empty but not harmless (``[0, 2**62, 2**62]`` overflows numpy's size
    arithmetic downstream), so the cap applies to the product with each zero counted as one. The product
    stops growing at the cap: a hostile shape costs one multiplication per dimension of machine-size ints.
    """
    extent = 1
    elements = 1
    for d in shape:
        if d > 1:
            extent *= d
            if extent > cap:
                return None
        elements *= d
    return elements


def items_over(where: str, count: int, total: int, limits: Limits) -> ValidationError:
    """The error for a record whose items pass ``max_items``, found on its bytes before decoding (so no
    event id is known yet)."""
    return too_many(where or "record", count, "items", limits, None, total)


def tensor_too_large(where: str, shape: Sequence[int], limits: Limits, event_id: str | None) -> ValidationError:
    count = 1
    zeros = False
    for d in shape:
        if d == 0:
            zeros = True
            continue
        count *= d
        if count > _PRODUCT_SHOWN_MAX:
            break
    said = f"more than {_PRODUCT_SHOWN_MAX:,}" if count > _PRODUCT_SHOWN_MAX else f"{count:,}"
    dims = f"{len(shape):,} dim" + ("" if len(shape) == 1 else "s")
    spans = f"spanning {said} elements with its zero dims counted as one" if zeros else f"with {said} elements"
    return ValidationError(
        ErrorCode.TENSOR_TOO_LARGE,
        f"{where}.shape: {dims} {spans}, max_tensor_elements is {limits.max_tensor_elements:,}",
        event_id=event_id,
    )
