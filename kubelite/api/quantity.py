"""Kubernetes resource quantities ("500m", "1.5Gi", "2e3", 4) parsed to exact Decimals.

Shared by validation (does it parse, is requests <= limits) and the scheduler (fit checks), so it
works in Decimal rather than float: "0.1" + "0.2" CPUs must compare exactly like Go's inf.Dec does.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Same grammar as k8s.io/apimachinery/pkg/api/resource: sign, digits with an optional fraction
# (".5" and "5." are both legal), then a binary suffix, a decimal exponent, or a decimal SI suffix.
# The exponent alternative comes before the bare "E" (exa) suffix so "1e3" is 1000, not an error.
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE])?$"
)

QUANTITY_REGEX_TEXT = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class QuantityError(ValueError):
    """The value is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """Return the exact value of a quantity: parse_quantity("100m") == Decimal("0.1")."""
    # bool is an int subclass, but `cpu: true` is a type error, not 1 CPU.
    if isinstance(value, bool):
        raise QuantityError(f"quantities must be strings or numbers, not {value!r}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise QuantityError(f"quantity must be finite: {value}")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise QuantityError(f"quantity must be finite: {value}")
        # str() gives the shortest repr, so 0.1 becomes Decimal("0.1") rather than 0.1000000000000000055...
        return Decimal(str(value))
    if not isinstance(value, str):
        raise QuantityError(f"quantities must be strings or numbers, not {type(value).__name__}")
    m = _QUANTITY_RE.match(value)
    if m is None:
        raise QuantityError(f"quantities must match the regular expression '{QUANTITY_REGEX_TEXT}'")
    try:
        number = Decimal(m.group("num"))
    except InvalidOperation as exc:  # pragma: no cover - the regex only admits valid decimals
        raise QuantityError(f"invalid number in quantity {value!r}") from exc
    suffix = m.group("suffix") or ""
    if not suffix:
        return number
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def cpu_millis(value: str | int | float | Decimal) -> int:
    """CPU as integer millicores, rounding up like Kubernetes' MilliValue() (1n CPU needs 1m)."""
    q = parse_quantity(value) * 1000
    return int(q.to_integral_value(rounding="ROUND_CEILING"))


def to_int(value: str | int | float | Decimal) -> int:
    """Quantity as an integer (bytes for memory/storage), rounding up like Kubernetes' Value()."""
    return int(parse_quantity(value).to_integral_value(rounding="ROUND_CEILING"))
