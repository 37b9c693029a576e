"""Label and field selectors, with Kubernetes' string syntax and semantics.

Label selectors (``labelSelector=`` on the wire, ``selector`` in Deployments and Services)::

    a=b  a==b  a!=b  a in (x,y)  a notin (x)  a  !a  a>1  a<1      joined by "," (AND)

``!=`` and ``notin`` also match objects that lack the key, as in Kubernetes. An empty selector
matches everything; the selector built from a missing (``None``) API selector matches nothing,
which is what ``metav1.LabelSelectorAsSelector`` does for a nil selector.

Field selectors (``fieldSelector=``) are ``field=value``, ``field==value`` or ``field!=value``
joined by ``,``; ``\\``, ``,`` and ``=`` in values are escaped with a backslash. Which fields a
resource supports is in ``SUPPORTED_FIELDS``; the API server checks with
``FieldSelector.validate(plural)`` and rejects the rest (Kubernetes answers 400 the same way).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SUPPORTED_FIELDS",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "SelectorError",
    "label_selector_from_dict",
    "parse_field_selector",
    "parse_label_selector",
    "supported_fields",
]


class SelectorError(ValueError):
    """A selector string or API selector object is malformed."""


# --- label keys and values (k8s.io/apimachinery/pkg/util/validation) ---------------------------

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _validate_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        raise SelectorError(
            f"invalid label key {key!r}: prefix part must be a lowercase DNS subdomain of at most 253 characters"
        )
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        raise SelectorError(
            f"invalid label key {key!r}: name part must be 1-63 characters, alphanumeric, '-', '_' or '.', "
            "starting and ending with an alphanumeric character"
        )


def _validate_value(key: str, value: str) -> None:
    # An empty value is legal (``a=`` selects labels set to "").
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        raise SelectorError(
            f"invalid label value {value!r} for key {key!r}: must be at most 63 characters, alphanumeric, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )


# --- label selectors ---------------------------------------------------------------------------

# Operators, spelled as in the selector string; "exists" and "!" have no value.
EQUALS, NOT_EQUALS, IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GT, LT = "=", "!=", "in", "notin", "exists", "!", ">", "<"
_SET_OPS = frozenset({EQUALS, IN})
_NEGATIVE_OPS = frozenset({NOT_EQUALS, NOT_IN})


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # one of the operator constants above
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in _SET_OPS:
            return self.key in labels and labels[self.key] in self.values
        if op in _NEGATIVE_OPS:
            return self.key not in labels or labels[self.key] not in self.values
        # Gt/Lt: both sides must be integers, otherwise no match (as in Kubernetes).
        if self.key not in labels:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == GT else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        return f"{self.key}{op}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    # True only for the selector of a nil API selector: it matches no object at all.
    matches_nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements and not self.matches_nothing

    def required_tokens(self) -> tuple[bytes, ...]:
        """JSON strings every matching object's encoding must contain (a cheap pre-check on raw bytes).

        Keys of =, in, exists, >, < requirements must be present as labels, and = needs its value
        too. Label keys and values are restricted to characters JSON never escapes, so their quoted
        form appears verbatim in any JSON encoding of a matching object.
        """
        tokens: list[bytes] = []
        for r in self.requirements:
            if r.operator in (EQUALS, IN, EXISTS, GT, LT):
                tokens.append(f'"{r.key}"'.encode())
            if r.operator == EQUALS or (r.operator == IN and len(r.values) == 1):
                tokens.append(f'"{r.values[0]}"'.encode())
        return tuple(tokens)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# Tokens: operators, parentheses, commas, and "identifiers" (anything else up to a separator).
_TOKEN_RE = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s=!(),<>]+)")
_IDENT_RE = re.compile(r"[^\s=!(),<>]+")


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0

    @staticmethod
    def _tokenize(text: str) -> list[str]:
        tokens: list[str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN_RE.match(text, pos)
            if m is None:  # pragma: no cover - the pattern matches any non-blank character
                raise SelectorError(f"unable to parse label selector {text!r} at position {pos}")
            tokens.append(m.group(1))
            pos = m.end()
        return tokens

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> str | None:
        tok = self._peek()
        self.pos += 1
        return tok

    def _fail(self, what: str) -> SelectorError:
        got = self._peek()
        found = "end of string" if got is None else repr(got)
        return SelectorError(f"unable to parse label selector {self.text!r}: expected {what}, found {found}")

    def _ident(self, what: str) -> str:
        tok = self._peek()
        if tok is None or not _IDENT_RE.fullmatch(tok):
            raise self._fail(what)
        self.pos += 1
        return tok

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        if not self.tokens:
            return LabelSelector()
        while True:
            reqs.append(self._requirement())
            tok = self._next()
            if tok is None:
                break
            if tok != ",":
                self.pos -= 1
                raise self._fail("',' or end of string")
        # Sorted by key like Kubernetes' parser, so str() is canonical.
        return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))

    def _requirement(self) -> Requirement:
        if self._peek() == "!":
            self.pos += 1
            key = self._ident("a label key after '!'")
            _validate_key(key)
            return Requirement(key, DOES_NOT_EXIST)
        key = self._ident("a label key")
        _validate_key(key)
        tok = self._peek()
        if tok is None or tok == ",":
            return Requirement(key, EXISTS)
        self.pos += 1
        if tok in ("=", "==", "!=", ">", "<"):
            op = NOT_EQUALS if tok == "!=" else EQUALS if tok in ("=", "==") else tok
            nxt = self._peek()
            value = ""
            if nxt is not None and nxt != ",":
                value = self._ident("a label value")
            if op in (GT, LT):
                try:
                    int(value)
                except ValueError:
                    raise SelectorError(
                        f"invalid label selector {self.text!r}: for '{op}' the value must be an integer, got {value!r}"
                    ) from None
            else:
                _validate_value(key, value)
            return Requirement(key, op, (value,))
        if tok in (IN, NOT_IN):
            return Requirement(key, tok, self._value_set(key))
        self.pos -= 1
        raise self._fail(f"an operator (=, ==, !=, in, notin, >, <) after key {key!r}")

    def _value_set(self, key: str) -> tuple[str, ...]:
        if self._next() != "(":
            self.pos -= 1
            raise self._fail("'('")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self._peek()
            if tok == ")":
                if expect_value:
                    values.append("")  # "a in ()" and "a in (x,)" hold "" as Kubernetes does
                self.pos += 1
                break
            if tok == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                self.pos += 1
                continue
            if not expect_value:
                raise self._fail("',' or ')'")
            value = self._ident("a label value or ')'")
            _validate_value(key, value)
            values.append(value)
            expect_value = False
        return tuple(sorted(set(values)))  # canonical, so equal selectors compare equal


def parse_label_selector(s: str) -> LabelSelector:
    """Parse a label selector string (``""`` selects everything)."""
    return _LabelParser(s).parse()


_API_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """Build a selector from an API ``LabelSelector`` (``matchLabels`` + ``matchExpressions``).

    ``None`` gives a selector matching nothing and ``{}`` one matching everything, as in Kubernetes.
    """
    if sel is None:
        return LabelSelector(matches_nothing=True)
    if not isinstance(sel, Mapping):
        raise SelectorError(f"label selector must be an object, got {type(sel).__name__}")
    reqs: list[Requirement] = []
    match_labels = sel.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise SelectorError("matchLabels must be an object of string keys and values")
    for key, value in match_labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SelectorError(f"matchLabels entry {key!r}: keys and values must be strings")
        _validate_key(key)
        _validate_value(key, value)
        reqs.append(Requirement(key, EQUALS, (value,)))
    exprs = sel.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise SelectorError("matchExpressions must be a list")
    for i, expr in enumerate(exprs):
        reqs.append(_requirement_from_expression(i, expr))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def _requirement_from_expression(i: int, expr: Any) -> Requirement:
    where = f"matchExpressions[{i}]"
    if not isinstance(expr, Mapping):
        raise SelectorError(f"{where} must be an object")
    key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if not isinstance(key, str):
        raise SelectorError(f"{where}.key is required")
    _validate_key(key)
    if operator not in _API_OPERATORS:
        raise SelectorError(
            f"{where}.operator: {operator!r} is not a valid label selector operator "
            f"(supported: {', '.join(_API_OPERATORS)})"
        )
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SelectorError(f"{where}.values must be a list of strings")
    op = _API_OPERATORS[operator]
    if op in (IN, NOT_IN) and not values:
        raise SelectorError(f"{where}.values: must be specified when operator is {operator!r}")
    if op in (EXISTS, DOES_NOT_EXIST) and values:
        raise SelectorError(f"{where}.values: may not be specified when operator is {operator!r}")
    for v in values:
        _validate_value(key, v)
    return Requirement(key, op, tuple(sorted(set(values))))


# --- field selectors ---------------------------------------------------------------------------

_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})

SUPPORTED_FIELDS: dict[str, set[str]] = {
    "pods": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "nodes": {"spec.unschedulable"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "replicasets": {"status.replicas"},
}
for _fields in SUPPORTED_FIELDS.values():
    _fields.update(_COMMON_FIELDS)


def supported_fields(plural: str) -> set[str]:
    """The field selector labels a resource accepts (every kind has metadata.name/namespace)."""
    return SUPPORTED_FIELDS.get(plural, set(_COMMON_FIELDS))


# Field labels that are not the object's JSON path (Event's fields.Set in Kubernetes).
_FIELD_PATHS = {"source": "source.component", "reportingComponent": "reportingController"}
# Booleans Kubernetes renders as "false" when unset, so "spec.unschedulable=false" selects them.
_FALSE_WHEN_MISSING = frozenset({"spec.unschedulable", "spec.hostNetwork"})


def _field_value(obj: Mapping[str, Any], field: str) -> str:
    cur: Any = obj
    for part in _FIELD_PATHS.get(field, field).split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
        if cur is None:
            return "false" if field in _FALSE_WHEN_MISSING else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, Mapping | list):
        return ""  # not a scalar: nothing a selector value could equal
    return str(cur)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str

    def __iter__(self) -> Iterator[str]:
        # Lets callers unpack ``for field, op, value in selector.requirements``.
        return iter((self.field, self.op, self.value))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        equal = _field_value(obj, self.field) == self.value
        return equal if self.op == EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.op}{_escape_field_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def validate(self, plural: str) -> None:
        """Raise SelectorError naming the first field ``plural`` cannot be selected by."""
        allowed = supported_fields(plural)
        for r in self.requirements:
            if r.field not in allowed:
                raise SelectorError(
                    f'field label not supported: "{r.field}" for {plural} '
                    f"(supported: {', '.join(sorted(allowed))})"
                )

    def value_for(self, field: str) -> str | None:
        """The value an ``=`` requirement pins ``field`` to, if any (lets a server narrow a scan)."""
        for r in self.requirements:
            if r.field == field and r.op == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])  # keep escapes; the value is unescaped later
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape_field_value(raw: str, term: str) -> str:
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector term {term!r}: invalid escape sequence in value")
            out.append(raw[i + 1])
            i += 2
            continue
        if c in ",=":
            raise SelectorError(f"invalid field selector term {term!r}: unescaped {c!r} in value")
        out.append(c)
        i += 1
    return "".join(out)


def parse_field_selector(s: str) -> FieldSelector:
    """Parse ``f=v,f2!=v2`` (``""`` selects everything)."""
    if not s.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(s, ","):
        if not term:
            raise SelectorError(f"invalid field selector {s!r}: empty term")
        # The operator is the first unescaped "!=", "==" or "=" (field names never hold them).
        m = re.match(r"^([^=!\\]*)(!=|==|=)(.*)$", term, re.DOTALL)
        if m is None:
            raise SelectorError(
                f"invalid field selector term {term!r}: expected field=value, field==value or field!=value"
            )
        field, op, raw = m.group(1).strip(), m.group(2), m.group(3)
        if not field:
            raise SelectorError(f"invalid field selector term {term!r}: missing field name")
        reqs.append(FieldRequirement(field, NOT_EQUALS if op == "!=" else EQUALS, _unescape_field_value(raw, term)))
    return FieldSelector(tuple(reqs))
