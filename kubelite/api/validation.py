"""Schema and semantic validation of API objects (wire-format dicts), as kube-apiserver does it.

Two layers:

* the *schema* layer walks the object against the `kubernetes` client's generated models
  (``openapi_types`` / ``attribute_map``): wrong JSON types, missing model-required fields, and (for
  ``fieldValidation=Strict|Warn``) unknown fields.  Derived once per model and cached.
* the *semantic* layer is a port of the relevant bits of pkg/apis/core/validation and
  pkg/apis/apps/validation: names, labels, ports, quantities, selectors, immutability on update.

Callers apply ``kubelite.api.defaults.apply_defaults`` first, as the API server does, so fields that
Kubernetes always defaults are only checked for allowed values here, not for presence.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import inspect
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from kubelite.api.quantity import QuantityError, parse_quantity
from kubelite.api.registry import ResourceType

Obj = dict[str, Any]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
TOO_LONG = "FieldValueTooLong"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
NOT_FOUND = "FieldValueNotFound"
TYPE_INVALID = "FieldValueTypeInvalid"


@dataclass(frozen=True)
class FieldError:
    field: str  # JSON path like "spec.template.spec.containers[0].image"
    type: str  # a Kubernetes StatusCause type, e.g. "FieldValueRequired"
    message: str  # e.g. 'Required value' / 'Invalid value: -1: must be greater than or equal to 0'

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class ValidationOptions:
    """Server settings that change what is valid."""

    node_port_range: tuple[int, int] = (30000, 32767)


DEFAULT_OPTIONS = ValidationOptions()


# --------------------------------------------------------------------------------------------
# Schema derived from the kubernetes client models
# --------------------------------------------------------------------------------------------

# Kinds of schema node.
STR, INT, BOOL, FLOAT, DATETIME, BYTES, QUANTITY, INT_OR_STRING, ANY, LIST, MAP, MODEL = (
    "string", "integer", "boolean", "number", "datetime", "bytes", "quantity", "int-or-string",
    "any", "array", "map", "object",
)

# The generator maps resource.Quantity to "str" and IntOrString to "object", losing the
# distinction; recover it from the JSON field names that carry them in the served kinds.
_QUANTITY_MAP_FIELDS = frozenset(
    {"limits", "requests", "capacity", "allocatable", "overhead", "allocatedResources", "hard", "used"}
)
_QUANTITY_FIELDS = frozenset({"sizeLimit"})
# "object" fields that really are free-form JSON rather than IntOrString.
_FREEFORM_OBJECT_FIELDS = frozenset({"fieldsV1", "raw", "object"})

_LIST_RE = re.compile(r"^(?:List|list)\[(.+)\]$")
_MAP_RE = re.compile(r"^(?:Dict\[str, (.+)\]|dict\(str, (.+)\))$")
_PRIMITIVES = {"str": STR, "int": INT, "bool": BOOL, "float": FLOAT, "datetime": DATETIME,
               "date": DATETIME, "bytes": BYTES, "object": INT_OR_STRING}


@dataclass(frozen=True)
class SchemaType:
    kind: str
    item: SchemaType | None = None  # element type of LIST / value type of MAP
    model: str = ""  # model class name for MODEL (resolved lazily: models are recursive)


@dataclass(frozen=True)
class ModelSchema:
    name: str
    fields: dict[str, SchemaType]  # JSON name -> type
    required: tuple[str, ...]  # JSON names


def _models() -> Any:
    import kubernetes.client.models as models  # deferred: importing the client is slow

    return models


def _parse_type(type_str: str, json_name: str) -> SchemaType:
    m = _LIST_RE.match(type_str)
    if m:
        return SchemaType(LIST, _parse_type(m.group(1), json_name))
    m = _MAP_RE.match(type_str)
    if m:
        inner = m.group(1) or m.group(2)
        if inner == "str" and json_name in _QUANTITY_MAP_FIELDS:
            return SchemaType(MAP, SchemaType(QUANTITY))
        return SchemaType(MAP, _parse_type(inner, json_name))
    if type_str == "str" and json_name in _QUANTITY_FIELDS:
        return SchemaType(QUANTITY)
    if type_str == "object" and json_name in _FREEFORM_OBJECT_FIELDS:
        return SchemaType(ANY)
    if type_str in _PRIMITIVES:
        return SchemaType(_PRIMITIVES[type_str])
    if hasattr(_models(), type_str):
        return SchemaType(MODEL, model=type_str)
    return SchemaType(ANY)  # unknown to this client version: accept rather than reject


_LEGACY_REQUIRED_RE = re.compile(r"Invalid value for `(\w+)`, must not be `None`")


def _required_attrs(cls: Any) -> list[str]:
    """Python attribute names the model requires.

    Pydantic-generated clients (v33+) say so in ``model_fields``; the older generator only reveals
    it in setter source ("Invalid value for `x`, must not be `None`"), so fall back to reading that.
    """
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, dict) and model_fields:
        out: list[str] = []
        py_names: dict[str, str] = {v: k for k, v in cls.attribute_map.items()}
        for key, info in model_fields.items():
            if info.is_required():
                json_name: str = getattr(info, "serialization_alias", None) or cls.attribute_map.get(key, key)
                out.append(py_names.get(json_name) or str(key))
        return out
    try:
        return _LEGACY_REQUIRED_RE.findall(inspect.getsource(cls))
    except (OSError, TypeError):
        return []


@functools.cache
def model_schema(model: str) -> ModelSchema:
    """The schema of a kubernetes client model class, e.g. model_schema("V1Pod")."""
    cls = getattr(_models(), model)
    attribute_map: dict[str, str] = cls.attribute_map
    fields = {attribute_map[attr]: _parse_type(t, attribute_map[attr]) for attr, t in cls.openapi_types.items()}
    required = tuple(attribute_map[a] for a in _required_attrs(cls) if a in attribute_map)
    return ModelSchema(model, fields, required)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fmt(value: Any) -> str:
    """Render a value the way Kubernetes error messages quote it: strings quoted, numbers bare."""
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _SchemaWalker:
    """One pass over an object collecting type errors, missing required fields and unknown fields."""

    def __init__(self, prune: bool = False) -> None:
        self.errors: list[FieldError] = []
        self.unknown: list[str] = []
        self.prune = prune  # drop unknown fields as they are found (decoding into typed structs does)

    def _type_error(self, path: str, value: Any, expected: str) -> None:
        self.errors.append(FieldError(
            path, TYPE_INVALID,
            f"Invalid value: {_fmt(value)}: must be of type {expected}, not {_type_name(value)}",
        ))

    def walk_changed(self, value: Obj, old: Obj, t: SchemaType) -> None:
        """walk() of a whole object, skipping the top-level fields equal to those of ``old`` (valid)."""
        schema = model_schema(t.model)
        for key, sub in value.items():
            ft = schema.fields.get(key)
            if ft is None:
                self.unknown.append(key)
            elif sub is not None and not identical(sub, old.get(key, _ABSENT)):
                self.walk(sub, ft, key)
        for req in schema.required:
            if value.get(req) is None:
                self.errors.append(FieldError(req, REQUIRED, "Required value"))

    def walk(self, value: Any, t: SchemaType, path: str) -> None:
        if value is None:
            return  # JSON null is "unset" for optional fields; required ones are caught by the parent
        kind = t.kind
        if kind == MODEL:
            if not isinstance(value, dict):
                self._type_error(path, value, "object")
                return
            schema = model_schema(t.model)
            fields = schema.fields
            for key, sub in list(value.items()):
                ft = fields.get(key)
                if ft is None:
                    self.unknown.append(_join(path, key))
                    if self.prune:
                        del value[key]
                elif sub is not None:
                    self.walk(sub, ft, _join(path, key))
            for req in schema.required:
                if value.get(req) is None:
                    self.errors.append(FieldError(_join(path, req), REQUIRED, "Required value"))
        elif kind == LIST:
            if not isinstance(value, list):
                self._type_error(path, value, "array")
                return
            assert t.item is not None
            for i, item in enumerate(value):
                if item is None and t.item.kind == MODEL:
                    self._type_error(f"{path}[{i}]", item, "object")
                else:
                    self.walk(item, t.item, f"{path}[{i}]")
        elif kind == MAP:
            if not isinstance(value, dict):
                self._type_error(path, value, "object")
                return
            assert t.item is not None
            for key, item in value.items():
                if item is None and t.item.kind in (STR, QUANTITY, BYTES):
                    self._type_error(f"{path}[{key}]", item, "string")
                else:
                    self.walk(item, t.item, f"{path}[{key}]")
        elif kind in (STR, DATETIME, BYTES):
            if not isinstance(value, str):
                self._type_error(path, value, "string")
        elif kind == INT:
            # bool is an int subclass in Python but not in JSON; integral floats come from some YAML.
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                self._type_error(path, value, "integer")
        elif kind == FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._type_error(path, value, "number")
        elif kind == BOOL:
            if not isinstance(value, bool):
                self._type_error(path, value, "boolean")
        elif kind == INT_OR_STRING:
            if isinstance(value, bool) or not isinstance(value, int | str):
                self._type_error(path, value, "integer or string")
        elif kind == QUANTITY:
            # Kubernetes accepts numbers for quantities too (`memory: 1073741824`).
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                self._type_error(path, value, "quantity (string or number)")
                return
            try:
                parse_quantity(value)
            except QuantityError as exc:
                self.errors.append(FieldError(path, INVALID, f"Invalid value: {_fmt(value)}: {exc}"))


def unknown_fields(rt: ResourceType, obj: dict[str, Any], prune: bool = False) -> list[str]:
    """JSON paths of fields the schema does not know (for fieldValidation=Strict/Warn).

    With ``prune``, those fields are also removed from ``obj`` in place.
    """
    walker = _SchemaWalker(prune)
    walker.walk(obj, SchemaType(MODEL, model=rt.model), "")
    return walker.unknown


# --------------------------------------------------------------------------------------------
# String format checks (k8s.io/apimachinery/pkg/util/validation); each returns error messages
# --------------------------------------------------------------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_RE = re.compile(f"^{_DNS1035_LABEL_FMT}$")
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^({_QUALIFIED_NAME_FMT})?$")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_VAR_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_IANA_SVC_NAME_RE = re.compile(r"^[-a-z0-9]+$")
_IANA_HAS_LETTER_RE = re.compile(r"[a-z]")
_PERCENT_RE = re.compile(r"^[0-9]+%$")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
ANNOTATIONS_MAX_BYTES = 256 * 1024
CONFIG_MAX_BYTES = 1024 * 1024


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _regex_error(what: str, fmt: str, *examples: str) -> str:
    ex = ",  or ".join(f"'{e}'" for e in examples)
    return f"{what} (e.g. {ex}, regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_too_long(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character", _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_too_long(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character", _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_too_long(DNS1123_LABEL_MAX))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character", _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """`[prefix/]name`: prefix a DNS subdomain, name <= 63 chars of [-A-Za-z0-9_.] (label keys etc)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs = ["prefix part must be non-empty"]
        else:
            errs = [f"prefix part {m}" for m in is_dns1123_subdomain(prefix)]
    else:
        return [_regex_error(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character", _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part " + _too_long(63))
        if not _QUALIFIED_NAME_RE.match(name):
            errs.append("name part " + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character", _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(_too_long(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character", _QUALIFIED_NAME_FMT,
            "MyValue", "my_value", "12345"))
    return errs


def is_iana_svc_name(value: str) -> list[str]:
    errs = []
    if len(value) > 15:
        errs.append(_too_long(15))
    if not _IANA_SVC_NAME_RE.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _IANA_HAS_LETTER_RE.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_config_key(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_too_long(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(_regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+", "key.name", "KEY_NAME", "key-name"))
    # Keys become file names in volumes: '.'/'..' would escape the directory.
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_env_var_name(value: str) -> list[str]:
    if _ENV_VAR_RE.match(value):
        return []
    return [_regex_error(
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
        "'.', and must not start with a digit", "[-._a-zA-Z][-._a-zA-Z0-9]*", "my.env-name", "MY_ENV.NAME",
        "MyEnvName1")]


def is_path_segment_name(value: str) -> list[str]:
    """Names become URL path segments and storage keys, so they must not traverse."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


# --------------------------------------------------------------------------------------------
# Error collection
# --------------------------------------------------------------------------------------------


@dataclass
class _Errors:
    opts: ValidationOptions
    items: list[FieldError] = field(default_factory=list)

    def required(self, path: str, detail: str = "") -> None:
        self.items.append(FieldError(path, REQUIRED, f"Required value: {detail}" if detail else "Required value"))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.items.append(FieldError(path, INVALID, f"Invalid value: {_fmt(value)}: {detail}"))

    def not_supported(self, path: str, value: Any, supported: Iterable[str]) -> None:
        allowed = ", ".join(f'"{s}"' for s in supported)
        self.items.append(FieldError(path, NOT_SUPPORTED, f"Unsupported value: {_fmt(value)}: supported values: {allowed}"))

    def duplicate(self, path: str, value: Any) -> None:
        self.items.append(FieldError(path, DUPLICATE, f"Duplicate value: {_fmt(value)}"))

    def too_long(self, path: str, limit: int) -> None:
        self.items.append(FieldError(path, TOO_LONG, f"Too long: may not be more than {limit} bytes"))

    def forbidden(self, path: str, detail: str) -> None:
        self.items.append(FieldError(path, FORBIDDEN, f"Forbidden: {detail}"))

    def not_found(self, path: str, value: Any) -> None:
        self.items.append(FieldError(path, NOT_FOUND, f"Not found: {_fmt(value)}"))

    # -- composite helpers --

    def check(self, path: str, value: Any, messages: list[str]) -> bool:
        for msg in messages:
            self.invalid(path, value, msg)
        return not messages

    def enum(self, path: str, value: Any, allowed: tuple[str, ...], *, required: bool = False) -> None:
        if value is None or value == "":
            if required:
                self.required(path)
        elif value not in allowed:
            self.not_supported(path, value, allowed)

    def non_negative(self, path: str, value: Any) -> None:
        if value is not None and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")

    def port(self, path: str, value: Any) -> None:
        if value is not None and not 1 <= value <= 65535:
            self.invalid(path, value, "must be between 1 and 65535, inclusive")

    def port_num_or_name(self, path: str, value: Any) -> None:
        """IntOrString port: a number 1..65535 or an IANA_SVC_NAME naming a container port."""
        if isinstance(value, str):
            self.check(path, value, is_iana_svc_name(value))
        elif isinstance(value, int):
            self.port(path, value)

    def immutable(self, path: str, new: Any, old: Any) -> None:
        if new != old:
            self.invalid(path, new, "field is immutable")


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _quantity(value: Any) -> Decimal | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None  # already reported by the schema layer


# --------------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------------

NameFn = Callable[[str], list[str]]

_STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})
PROTOCOLS = ("TCP", "UDP", "SCTP")


def validate_labels(e: _Errors, labels: Any, path: str) -> None:
    for key, value in _dict(labels).items():
        e.check(path, key, is_qualified_name(key))
        if isinstance(value, str):
            e.check(path, value, is_label_value(value))


def _validate_annotations(e: _Errors, annotations: Any, path: str) -> None:
    total = 0
    for key, value in _dict(annotations).items():
        # Upstream lower-cases before checking: annotation keys are case-insensitive in practice.
        e.check(path, key, is_qualified_name(key.lower()))
        total += len(key.encode()) + (len(value.encode()) if isinstance(value, str) else 0)
    if total > ANNOTATIONS_MAX_BYTES:
        e.too_long(path, ANNOTATIONS_MAX_BYTES)


def _validate_name(e: _Errors, path: str, name: str, name_fn: NameFn) -> None:
    problems = is_path_segment_name(name)
    e.check(path, name, problems or name_fn(name))


def _validate_metadata(e: _Errors, rt: ResourceType, meta: Obj, name_fn: NameFn) -> None:
    name = meta.get("name")
    if not name:
        e.required("metadata.name", "name or generateName is required")
    else:
        _validate_name(e, "metadata.name", name, name_fn)
    gen = meta.get("generateName")
    if gen:
        # A prefix may end in '-' (a random suffix follows), so check it with the dash masked.
        masked = gen[:-1] + "a" if gen.endswith("-") and len(gen) > 1 else gen
        _validate_name(e, "metadata.generateName", masked, name_fn)
    namespace = meta.get("namespace")
    if rt.namespaced:
        if namespace:
            e.check("metadata.namespace", namespace, is_path_segment_name(namespace) or is_dns1123_label(namespace))
    elif namespace:
        e.forbidden("metadata.namespace", "not allowed on this type")
    validate_labels(e, meta.get("labels"), "metadata.labels")
    _validate_annotations(e, meta.get("annotations"), "metadata.annotations")
    controllers = 0
    for i, ref in enumerate(_dicts(meta.get("ownerReferences"))):
        p = f"metadata.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if ref.get(key) == "":
                e.required(f"{p}.{key}", f"{key} must not be empty")
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        e.invalid("metadata.ownerReferences", controllers, "Only one reference can have Controller set to true")
    for i, fin in enumerate(meta.get("finalizers") or []):
        p = f"metadata.finalizers[{i}]"
        if e.check(p, fin, is_qualified_name(fin)) and "/" not in fin and fin not in _STANDARD_FINALIZERS:
            e.invalid(p, fin, "name is neither a standard finalizer name nor is it fully qualified")
    for key in ("generation", "deletionGracePeriodSeconds"):
        e.non_negative(f"metadata.{key}", meta.get(key))


def _validate_metadata_update(e: _Errors, meta: Obj, old_meta: Obj) -> None:
    # Absent uid/namespace mean "unchanged": the server copies server-managed fields from the old
    # object (clients routinely strip them); a *different* value is the error.
    for key in ("name", "namespace", "uid"):
        new, old = meta.get(key), old_meta.get(key)
        if key != "name" and new in (None, ""):
            continue
        if old not in (None, ""):
            e.immutable(f"metadata.{key}", new, old)


_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(e: _Errors, selector: Any, path: str) -> None:
    sel = _dict(selector)
    validate_labels(e, sel.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(_dicts(sel.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        op = req.get("operator")
        values = req.get("values") or []
        e.enum(f"{p}.operator", op, _SELECTOR_OPS, required=True)
        if op in ("In", "NotIn") and not values:
            e.required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist") and values:
            e.forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        key = req.get("key")
        if isinstance(key, str):
            e.check(f"{p}.key", key, is_qualified_name(key))


def selector_matches(selector: Obj | None, labels: Obj | None) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression must hold."""
    sel = selector or {}
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for req in sel.get("matchExpressions") or []:
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _validate_int_or_percent(e: _Errors, path: str, value: Any, *, max_100: bool = False) -> None:
    if isinstance(value, int):
        e.non_negative(path, value)
    elif isinstance(value, str):
        if not _PERCENT_RE.match(value):
            e.invalid(path, value, _regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'", "[0-9]+%", "1%", "93%"))
        elif max_100 and int(value[:-1]) > 100:
            e.invalid(path, value, "must not be greater than 100%")


def _is_zero(value: Any) -> bool:
    return value == 0 or value == "0%"


# --------------------------------------------------------------------------------------------
# Pod spec
# --------------------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def _validate_volumes(e: _Errors, volumes: Any, path: str) -> set[str]:
    names: set[str] = set()
    source_fields = set(model_schema("V1Volume").fields) - {"name"}
    for i, vol in enumerate(_dicts(volumes)):
        p = f"{path}[{i}]"
        name = vol.get("name")
        if isinstance(name, str):
            if not name:
                e.required(f"{p}.name")
            elif e.check(f"{p}.name", name, is_dns1123_label(name)) and name in names:
                e.duplicate(f"{p}.name", name)
            names.add(name)
        sources = [k for k in vol if k in source_fields and vol[k] is not None]
        if not sources:
            e.required(p, "must specify a volume type")
        elif len(sources) > 1:
            e.forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type")
        for src_name, key in (("secret", "secretName"), ("configMap", "name"), ("persistentVolumeClaim", "claimName")):
            src = vol.get(src_name)
            if isinstance(src, dict) and not src.get(key):
                e.required(f"{p}.{src_name}.{key}")
        for src_name in ("secret", "configMap", "downwardAPI", "projected"):
            mode = _dict(vol.get(src_name)).get("defaultMode")
            if mode is not None and not 0 <= mode <= 0o777:
                e.invalid(f"{p}.{src_name}.defaultMode", mode,
                          "must be a number between 0 and 0777 (octal), both inclusive")
    return names


def _validate_resources(e: _Errors, res: Obj, path: str) -> None:
    parsed: dict[str, dict[str, Decimal]] = {}
    for kind in ("limits", "requests"):
        parsed[kind] = {}
        for name, raw in _dict(res.get(kind)).items():
            p = f"{path}.{kind}[{name}]"
            if e.check(p, name, is_qualified_name(name)) and "/" not in name and (
                name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-")
            ):
                e.invalid(p, name, "must be a standard resource for containers")
            q = _quantity(raw)
            if q is None:
                continue
            if q < 0:
                e.invalid(p, raw, "must be greater than or equal to 0")
            parsed[kind][name] = q
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            e.invalid(f"{path}.requests[{name}]", res["requests"][name],
                      f"must be less than or equal to {name} limit of {res['limits'][name]}")


def _validate_probe(e: _Errors, probe: Obj, path: str, *, success_must_be_one: bool) -> None:
    handlers = [h for h in _PROBE_HANDLERS if probe.get(h) is not None]
    if not handlers:
        e.required(path, "must specify a handler type")
    elif len(handlers) > 1:
        e.forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type")
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold", "terminationGracePeriodSeconds"):
        e.non_negative(f"{path}.{key}", probe.get(key))
    if success_must_be_one and probe.get("successThreshold") not in (None, 1):
        e.invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1")
    http = _dict(probe.get("httpGet"))
    if http:
        e.port_num_or_name(f"{path}.httpGet.port", http.get("port"))
        e.enum(f"{path}.httpGet.scheme", http.get("scheme"), ("HTTP", "HTTPS"))
    tcp = _dict(probe.get("tcpSocket"))
    if tcp:
        e.port_num_or_name(f"{path}.tcpSocket.port", tcp.get("port"))
    grpc = _dict(probe.get("grpc"))
    if grpc:
        e.port(f"{path}.grpc.port", grpc.get("port"))


def _validate_env(e: _Errors, env: Any, path: str) -> None:
    for i, ev in enumerate(_dicts(env)):
        p = f"{path}[{i}]"
        name = ev.get("name")
        if name == "":
            e.required(f"{p}.name")
        elif isinstance(name, str):
            e.check(f"{p}.name", name, is_env_var_name(name))
        value_from = ev.get("valueFrom")
        if isinstance(value_from, dict):
            if ev.get("value"):
                e.invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty")
            sources = [s for s in _ENV_SOURCES if value_from.get(s) is not None]
            if not sources:
                e.invalid(f"{p}.valueFrom", "",
                          "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`")
            elif len(sources) > 1:
                e.invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a time")
            for ref in ("configMapKeyRef", "secretKeyRef"):
                key = _dict(value_from.get(ref)).get("key")
                if key == "":
                    e.required(f"{p}.valueFrom.{ref}.key")
                elif isinstance(key, str):
                    e.check(f"{p}.valueFrom.{ref}.key", key, is_config_key(key))


def _validate_container(e: _Errors, c: Obj, path: str, volumes: set[str], names: set[str], *, init: bool) -> None:
    name = c.get("name")
    if name == "":
        e.required(f"{path}.name")
    elif isinstance(name, str):
        if e.check(f"{path}.name", name, is_dns1123_label(name)) and name in names:
            e.duplicate(f"{path}.name", name)
        names.add(name)
    image = c.get("image")
    if not image:
        e.required(f"{path}.image")
    elif image != image.strip():
        e.invalid(f"{path}.image", image, "must not have leading or trailing whitespace")
    e.enum(f"{path}.imagePullPolicy", c.get("imagePullPolicy"), PULL_POLICIES)
    e.enum(f"{path}.terminationMessagePolicy", c.get("terminationMessagePolicy"), TERMINATION_MESSAGE_POLICIES)
    restart = c.get("restartPolicy")
    if restart is not None:
        if not init:
            e.forbidden(f"{path}.restartPolicy", "may not be set for non-init containers")
        else:
            e.enum(f"{path}.restartPolicy", restart, ("Always",))
    port_names: set[str] = set()
    for i, port in enumerate(_dicts(c.get("ports"))):
        p = f"{path}.ports[{i}]"
        e.port(f"{p}.containerPort", port.get("containerPort"))
        if port.get("hostPort"):
            e.port(f"{p}.hostPort", port.get("hostPort"))
        e.enum(f"{p}.protocol", port.get("protocol"), PROTOCOLS)
        pname = port.get("name")
        if pname:
            if e.check(f"{p}.name", pname, is_iana_svc_name(pname)) and pname in port_names:
                e.duplicate(f"{p}.name", pname)
            port_names.add(pname)
    _validate_env(e, c.get("env"), f"{path}.env")
    for i, src in enumerate(_dicts(c.get("envFrom"))):
        refs = [r for r in ("configMapRef", "secretRef") if src.get(r) is not None]
        if len(refs) != 1:
            e.invalid(f"{path}.envFrom[{i}]", "", "must specify one of: `configMapRef` or `secretRef`")
        prefix = src.get("prefix")
        if prefix:
            e.check(f"{path}.envFrom[{i}].prefix", prefix, is_env_var_name(prefix))
    mount_paths: set[str] = set()
    for i, mount in enumerate(_dicts(c.get("volumeMounts"))):
        p = f"{path}.volumeMounts[{i}]"
        vname = mount.get("name")
        if vname == "":
            e.required(f"{p}.name")
        elif isinstance(vname, str) and vname not in volumes:
            e.not_found(f"{p}.name", vname)
        mpath = mount.get("mountPath")
        if mpath == "":
            e.required(f"{p}.mountPath")
        elif isinstance(mpath, str):
            if mpath in mount_paths:
                e.invalid(f"{p}.mountPath", mpath, "must be unique")
            mount_paths.add(mpath)
        sub = mount.get("subPath")
        if isinstance(sub, str) and (sub.startswith("/") or ".." in sub.split("/")):
            e.invalid(f"{p}.subPath", sub, "must be a relative path without '..'")
    _validate_resources(e, _dict(c.get("resources")), f"{path}.resources")
    sidecar = init and restart == "Always"
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if probe is None:
            continue
        if init and not sidecar:
            e.forbidden(f"{path}.{probe_name}", "may not be set for init containers without restartPolicy=Always")
            continue
        _validate_probe(e, probe, f"{path}.{probe_name}", success_must_be_one=probe_name != "readinessProbe")


def _validate_tolerations(e: _Errors, tolerations: Any, path: str) -> None:
    for i, tol in enumerate(_dicts(tolerations)):
        p = f"{path}[{i}]"
        key, op, value = tol.get("key"), tol.get("operator") or "Equal", tol.get("value")
        if key:
            e.check(f"{p}.key", key, is_qualified_name(key))
        elif op != "Exists":
            e.invalid(f"{p}.operator", op,
                      'operator must be Exists when `key` is empty, which means "match all values and all keys"')
        e.enum(f"{p}.operator", op, ("Exists", "Equal"))
        if op == "Exists" and value:
            e.invalid(f"{p}.operator", op, "value must be empty when `operator` is 'Exists'")
        elif isinstance(value, str) and value:
            e.check(f"{p}.value", value, is_label_value(value))
        effect = tol.get("effect")
        e.enum(f"{p}.effect", effect, TAINT_EFFECTS)
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            e.invalid(f"{p}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")


def validate_pod_spec(e: _Errors, spec: Obj, path: str, extra_volumes: frozenset[str] = frozenset()) -> None:
    """extra_volumes: names mounts may use without a pod volume (StatefulSet claim templates)."""
    volumes = _validate_volumes(e, spec.get("volumes"), f"{path}.volumes") | extra_volumes
    if not spec.get("containers"):
        e.required(f"{path}.containers")
    names: set[str] = set()  # container names are unique across init and regular containers
    for fld, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(_dicts(spec.get(fld))):
            _validate_container(e, c, f"{path}.{fld}[{i}]", volumes, names, init=init)
    e.enum(f"{path}.restartPolicy", spec.get("restartPolicy"), RESTART_POLICIES)
    e.enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    e.non_negative(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and not 1 <= ads <= 2147483647:
        e.invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive")
    selector = spec.get("nodeSelector")
    validate_labels(e, selector, f"{path}.nodeSelector")
    for key in ("serviceAccountName", "nodeName", "priorityClassName"):
        value = spec.get(key)
        if value:
            e.check(f"{path}.{key}", value, is_dns1123_subdomain(value))
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if value:
            e.check(f"{path}.{key}", value, is_dns1123_label(value))
    _validate_tolerations(e, spec.get("tolerations"), f"{path}.tolerations")


def _validate_pod(e: _Errors, obj: Obj) -> None:
    validate_pod_spec(e, _dict(obj.get("spec")), "spec")
    status = _dict(obj.get("status"))
    e.enum("status.phase", status.get("phase"), ("Pending", "Running", "Succeeded", "Failed", "Unknown"))
    for key in ("podIP", "hostIP"):
        ip = status.get(key)
        if ip and not _is_ip(ip):
            e.invalid(f"status.{key}", ip, "must be a valid IP address")


_POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`, "
    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
    "`spec.tolerations` (only additions to existing tolerations)"
)


def _validate_pod_update(e: _Errors, obj: Obj, old: Obj) -> None:
    new_spec, old_spec = _dict(obj.get("spec")), _dict(old.get("spec"))
    new_ads, old_ads = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if old_ads is not None and (new_ads is None or new_ads > old_ads):
        e.invalid("spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value")
    old_tols = old_spec.get("tolerations") or []
    new_tols = new_spec.get("tolerations") or []
    if any(t not in new_tols for t in old_tols):
        e.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
    # Compare everything else with the mutable fields masked to their old values.
    masked = copy.deepcopy(new_spec)
    for fld in ("containers", "initContainers"):
        new_cs, old_cs = masked.get(fld), old_spec.get(fld)
        if isinstance(new_cs, list) and isinstance(old_cs, list) and len(new_cs) == len(old_cs):
            for nc, oc in zip(new_cs, old_cs, strict=True):
                if isinstance(nc, dict) and isinstance(oc, dict):
                    # imagePullPolicy follows the image when it was defaulted from the tag.
                    for key in ("image", "imagePullPolicy"):
                        if key in oc:
                            nc[key] = oc[key]
                        else:
                            nc.pop(key, None)
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in old_spec:
            masked[key] = old_spec[key]
        else:
            masked.pop(key, None)
    if masked != old_spec:
        e.forbidden("spec", _POD_UPDATE_MSG)


# --------------------------------------------------------------------------------------------
# Workloads (apps/v1)
# --------------------------------------------------------------------------------------------


def _validate_template(e: _Errors, rt: ResourceType, spec: Obj) -> None:
    template = spec.get("template")
    if template is None:
        e.required("spec.template")
        return
    tmeta = _dict(template.get("metadata"))
    validate_labels(e, tmeta.get("labels"), "spec.template.metadata.labels")
    _validate_annotations(e, tmeta.get("annotations"), "spec.template.metadata.annotations")
    selector = spec.get("selector")
    if isinstance(selector, dict) and (selector.get("matchLabels") or selector.get("matchExpressions")):
        if not selector_matches(selector, tmeta.get("labels")):
            e.invalid("spec.template.metadata.labels", tmeta.get("labels") or {},
                      "`selector` does not match template `labels`")
    pspec = _dict(template.get("spec"))
    # StatefulSet pods get a volume per claim template, so mounts may name those.
    claims = frozenset(_dict(c.get("metadata")).get("name") or "" for c in _dicts(spec.get("volumeClaimTemplates")))
    validate_pod_spec(e, pspec, "spec.template.spec", claims)
    # Controllers recreate pods that exit, so only Always makes sense for them.
    policy = pspec.get("restartPolicy")
    if policy is not None and policy != "Always":
        e.not_supported("spec.template.spec.restartPolicy", policy, ("Always",))
    if pspec.get("activeDeadlineSeconds") is not None:
        e.forbidden("spec.template.spec.activeDeadlineSeconds",
                    f"activeDeadlineSeconds in {rt.kind} is not Supported")


def _validate_pvc_spec(e: _Errors, spec: Obj, path: str) -> None:
    modes = spec.get("accessModes") or []
    if not modes:
        e.required(f"{path}.accessModes", "at least 1 access mode is required")
    for i, mode in enumerate(modes):
        e.enum(f"{path}.accessModes[{i}]", mode, ACCESS_MODES)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        e.forbidden(f"{path}.accessModes", "may not use ReadWriteOncePod with other access modes")
    requests = _dict(_dict(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        e.required(f"{path}.resources[storage]")
    else:
        q = _quantity(requests["storage"])
        if q is not None and q <= 0:
            e.invalid(f"{path}.resources[storage]", requests["storage"], "must be greater than zero")
    e.enum(f"{path}.volumeMode", spec.get("volumeMode"), ("Block", "Filesystem"))
    sc = spec.get("storageClassName")
    if sc:
        e.check(f"{path}.storageClassName", sc, is_dns1123_subdomain(sc))
    if spec.get("selector") is not None:
        validate_label_selector(e, spec["selector"], f"{path}.selector")


def _validate_workload(e: _Errors, rt: ResourceType, obj: Obj) -> None:
    spec = _dict(obj.get("spec"))
    e.non_negative("spec.replicas", spec.get("replicas"))
    e.non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    e.non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    selector = spec.get("selector")
    if selector is None:
        e.required("spec.selector")
    else:
        validate_label_selector(e, selector, "spec.selector")
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            e.invalid("spec.selector", selector, f"empty selector is invalid for {rt.singular}")
    _validate_template(e, rt, spec)
    if rt.kind == "Deployment":
        _validate_deployment_spec(e, spec)
    elif rt.kind == "DaemonSet":
        _validate_daemonset_spec(e, spec)
    elif rt.kind == "StatefulSet":
        _validate_statefulset_spec(e, spec)


def _validate_deployment_spec(e: _Errors, spec: Obj) -> None:
    strategy = _dict(spec.get("strategy"))
    stype = strategy.get("type")
    e.enum("spec.strategy.type", stype, ("Recreate", "RollingUpdate"))
    ru = strategy.get("rollingUpdate")
    if stype == "Recreate" and ru is not None:
        e.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    elif isinstance(ru, dict):
        surge, unavail = ru.get("maxSurge"), ru.get("maxUnavailable")
        _validate_int_or_percent(e, "spec.strategy.rollingUpdate.maxSurge", surge)
        _validate_int_or_percent(e, "spec.strategy.rollingUpdate.maxUnavailable", unavail, max_100=True)
        if _is_zero(surge) and _is_zero(unavail):
            e.invalid("spec.strategy.rollingUpdate.maxUnavailable", unavail, "may not be 0 when `maxSurge` is 0")
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        e.non_negative("spec.progressDeadlineSeconds", pds)
        if pds <= (spec.get("minReadySeconds") or 0):
            e.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")


def _validate_daemonset_spec(e: _Errors, spec: Obj) -> None:
    strategy = _dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    e.enum("spec.updateStrategy.type", stype, ("RollingUpdate", "OnDelete"))
    ru = _dict(strategy.get("rollingUpdate"))
    if ru:
        surge, unavail = ru.get("maxSurge"), ru.get("maxUnavailable")
        _validate_int_or_percent(e, "spec.updateStrategy.rollingUpdate.maxSurge", surge)
        _validate_int_or_percent(e, "spec.updateStrategy.rollingUpdate.maxUnavailable", unavail, max_100=True)
        if _is_zero(unavail) and (surge is None or _is_zero(surge)):
            e.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", unavail,
                      "may not be 0 when `maxSurge` is 0")


def _validate_statefulset_spec(e: _Errors, spec: Obj) -> None:
    e.enum("spec.podManagementPolicy", spec.get("podManagementPolicy"), ("OrderedReady", "Parallel"))
    service = spec.get("serviceName")
    if service:  # empty is allowed: no governing headless service
        e.check("spec.serviceName", service, is_dns1035_label(service))
    strategy = _dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    e.enum("spec.updateStrategy.type", stype, ("RollingUpdate", "OnDelete"))
    ru = _dict(strategy.get("rollingUpdate"))
    if ru and stype == "OnDelete":
        e.invalid("spec.updateStrategy.rollingUpdate", ru, "only allowed for updateStrategy 'RollingUpdate'")
    e.non_negative("spec.updateStrategy.rollingUpdate.partition", ru.get("partition"))
    unavail = ru.get("maxUnavailable")
    if unavail is not None:
        _validate_int_or_percent(e, "spec.updateStrategy.rollingUpdate.maxUnavailable", unavail, max_100=True)
        if _is_zero(unavail):
            e.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", unavail, "must be greater than 0")
    retention = _dict(spec.get("persistentVolumeClaimRetentionPolicy"))
    for key in ("whenDeleted", "whenScaled"):
        e.enum(f"spec.persistentVolumeClaimRetentionPolicy.{key}", retention.get(key), ("Retain", "Delete"))
    e.non_negative("spec.ordinals.start", _dict(spec.get("ordinals")).get("start"))
    claim_names: set[str] = set()
    for i, claim in enumerate(_dicts(spec.get("volumeClaimTemplates"))):
        p = f"spec.volumeClaimTemplates[{i}]"
        cname = _dict(claim.get("metadata")).get("name")
        if not cname:
            e.required(f"{p}.metadata.name")
        elif e.check(f"{p}.metadata.name", cname, is_dns1123_subdomain(cname)) and cname in claim_names:
            e.duplicate(f"{p}.metadata.name", cname)
        claim_names.add(cname or "")
        validate_labels(e, _dict(claim.get("metadata")).get("labels"), f"{p}.metadata.labels")
        _validate_pvc_spec(e, _dict(claim.get("spec")), f"{p}.spec")


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _validate_workload_update(e: _Errors, rt: ResourceType, obj: Obj, old: Obj) -> None:
    spec, old_spec = _dict(obj.get("spec")), _dict(old.get("spec"))
    if old_spec.get("selector") is not None:
        e.immutable("spec.selector", spec.get("selector"), old_spec.get("selector"))
    if rt.kind == "StatefulSet":
        rest = {k: v for k, v in spec.items() if k not in _STS_MUTABLE and k != "selector"}
        old_rest = {k: v for k, v in old_spec.items() if k not in _STS_MUTABLE and k != "selector"}
        if rest != old_rest:
            e.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                        "'template', 'updateStrategy', 'revisionHistoryLimit', "
                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


# --------------------------------------------------------------------------------------------
# Core kinds
# --------------------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


def _validate_service(e: _Errors, obj: Obj) -> None:
    spec = _dict(obj.get("spec"))
    stype = spec.get("type") or "ClusterIP"
    e.enum("spec.type", spec.get("type"), SERVICE_TYPES)
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == "None"
    ports = _dicts(spec.get("ports"))
    if stype == "ExternalName":
        ext = spec.get("externalName")
        if not ext:
            e.required("spec.externalName")
        else:
            e.check("spec.externalName", ext, is_dns1123_subdomain(ext.removesuffix(".")))
        if cluster_ip:
            e.forbidden("spec.clusterIP", "may not be set for ExternalName services")
    else:
        if not ports and not headless:
            e.required("spec.ports")
        if cluster_ip and not headless and not _is_ip(cluster_ip):
            e.invalid("spec.clusterIP", cluster_ip, "must be empty, 'None', or a valid IP address")
        if headless and stype in ("NodePort", "LoadBalancer"):
            e.invalid("spec.clusterIP", cluster_ip, f"may not be set to 'None' for {stype} services")
    cluster_ips = spec.get("clusterIPs") or []
    if cluster_ips and cluster_ip and cluster_ips[0] != cluster_ip:
        e.invalid("spec.clusterIPs", cluster_ips, "element [0] must match clusterIP")
    lo, hi = e.opts.node_port_range
    names: set[str] = set()
    pairs: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        name = port.get("name")
        if not name:
            if len(ports) > 1:
                e.required(f"{p}.name")
        elif e.check(f"{p}.name", name, is_dns1123_label(name)):
            if name in names:
                e.duplicate(f"{p}.name", name)
            names.add(name)
        e.port(f"{p}.port", port.get("port"))
        protocol = port.get("protocol")
        e.enum(f"{p}.protocol", protocol, PROTOCOLS)
        key = (port.get("port"), protocol or "TCP")
        if key in pairs:
            e.duplicate(p, {"port": key[0], "protocol": key[1]})
        pairs.add(key)
        if port.get("targetPort") is not None:
            e.port_num_or_name(f"{p}.targetPort", port["targetPort"])
        node_port = port.get("nodePort")
        if node_port:
            if stype not in ("NodePort", "LoadBalancer"):
                e.forbidden(f"{p}.nodePort", f"may not be used when `type` is '{stype}'")
            elif not lo <= node_port <= hi:
                e.invalid(f"{p}.nodePort", node_port,
                          f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}")
            np_key = (node_port, protocol or "TCP")
            if np_key in node_ports:
                e.duplicate(f"{p}.nodePort", node_port)
            node_ports.add(np_key)
    affinity = spec.get("sessionAffinity")
    e.enum("spec.sessionAffinity", affinity, ("None", "ClientIP"))
    timeout = _dict(_dict(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
    if affinity == "ClientIP" and timeout is not None and not 0 < timeout <= 86400:
        e.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                  "must be greater than 0 and less than 86400")
    if stype != "ExternalName":
        validate_labels(e, spec.get("selector"), "spec.selector")
    etp = spec.get("externalTrafficPolicy")
    if etp:
        if stype not in ("NodePort", "LoadBalancer"):
            e.invalid("spec.externalTrafficPolicy", etp, "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
        else:
            e.enum("spec.externalTrafficPolicy", etp, ("Cluster", "Local"))
    e.enum("spec.internalTrafficPolicy", spec.get("internalTrafficPolicy"), ("Cluster", "Local"))
    for i, ip in enumerate(spec.get("externalIPs") or []):
        if not _is_ip(ip):
            e.invalid(f"spec.externalIPs[{i}]", ip, "must be a valid IP address")


def _validate_service_update(e: _Errors, obj: Obj, old: Obj) -> None:
    spec, old_spec = _dict(obj.get("spec")), _dict(old.get("spec"))
    # The allocated IP is fixed for the Service's life, except that ExternalName has none.
    old_ip = old_spec.get("clusterIP")
    if old_ip and "ExternalName" not in (spec.get("type"), old_spec.get("type")):
        e.immutable("spec.clusterIP", spec.get("clusterIP"), old_ip)


def _validate_config_data(e: _Errors, data: Any, path: str) -> None:
    for key in _dict(data):
        e.check(f"{path}[{key}]", key, is_config_key(key))


def _b64_decode(e: _Errors, path: str, value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        e.invalid(path, "<value omitted>", "illegal base64 data")
        return None


def _validate_configmap(e: _Errors, obj: Obj) -> None:
    data, binary = _dict(obj.get("data")), _dict(obj.get("binaryData"))
    _validate_config_data(e, data, "data")
    _validate_config_data(e, binary, "binaryData")
    total = sum(len(v.encode()) for v in data.values() if isinstance(v, str))
    for key, value in binary.items():
        if key in data:
            e.invalid(f"binaryData[{key}]", key, "duplicate of key present in data")
        if isinstance(value, str):
            raw = _b64_decode(e, f"binaryData[{key}]", value)
            total += len(raw) if raw is not None else 0
    if total > CONFIG_MAX_BYTES:
        e.too_long("data", CONFIG_MAX_BYTES)


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(e: _Errors, obj: Obj) -> None:
    data, string_data = _dict(obj.get("data")), _dict(obj.get("stringData"))
    _validate_config_data(e, data, "data")
    _validate_config_data(e, string_data, "stringData")
    total = sum(len(v.encode()) for k, v in string_data.items() if isinstance(v, str) and k not in data)
    for key, value in data.items():
        if isinstance(value, str):
            raw = _b64_decode(e, f"data[{key}]", value)
            total += len(raw) if raw is not None else 0
    if total > CONFIG_MAX_BYTES:
        e.too_long("data", CONFIG_MAX_BYTES)
    # stringData is merged into data on write, so both count toward the keys a type requires.
    keys = set(data) | set(string_data)
    stype = obj.get("type")
    for key in _SECRET_REQUIRED_KEYS.get(stype or "", ()):
        if key not in keys:
            e.required(f"data[{key}]")
    json_key = _SECRET_JSON_KEYS.get(stype or "")
    if json_key in keys:
        _check_json_object(e, f"data[{json_key}]", _secret_value(data, string_data, json_key))
    if stype == "kubernetes.io/basic-auth" and not keys & {"username", "password"}:
        e.required("data[username]", "one of username or password is required")
    if stype == "kubernetes.io/service-account-token":
        ann = _dict(_dict(obj.get("metadata")).get("annotations"))
        if not ann.get("kubernetes.io/service-account.name"):
            e.required("metadata.annotations[kubernetes.io/service-account.name]")


_SECRET_JSON_KEYS = {"kubernetes.io/dockercfg": ".dockercfg", "kubernetes.io/dockerconfigjson": ".dockerconfigjson"}


def _secret_value(data: Obj, string_data: Obj, key: str) -> bytes | None:
    """The bytes a Secret key will hold once stringData is merged (None if not decodable)."""
    if isinstance(string_data.get(key), str):
        return str(string_data[key]).encode()
    try:
        return base64.b64decode(data[key], validate=True) if isinstance(data.get(key), str) else None
    except (binascii.Error, ValueError):
        return None  # reported as illegal base64 already


def _check_json_object(e: _Errors, path: str, raw: bytes | None) -> None:
    if raw is None:
        return
    try:
        ok = isinstance(json.loads(raw), dict)
        detail = "must be a JSON object"
    except ValueError as err:  # the decoder's message names a position, never the contents
        ok, detail = False, f"invalid JSON: {err}"
    if not ok:
        e.invalid(path, "<secret contents redacted>", detail)


def _validate_immutable_data(e: _Errors, obj: Obj, old: Obj, keys: tuple[str, ...]) -> None:
    if not old.get("immutable"):
        return
    if not obj.get("immutable"):
        e.forbidden("immutable", "field is immutable when `immutable` is set")
    for key in keys:
        if obj.get(key) != old.get(key):
            e.forbidden(key, "field is immutable when `immutable` is set")


def _validate_secret_update(e: _Errors, obj: Obj, old: Obj) -> None:
    e.immutable("type", obj.get("type"), old.get("type"))
    _validate_immutable_data(e, obj, old, ("data", "stringData"))


def _validate_configmap_update(e: _Errors, obj: Obj, old: Obj) -> None:
    _validate_immutable_data(e, obj, old, ("data", "binaryData"))


def _validate_taints(e: _Errors, taints: Any, path: str) -> None:
    seen: set[tuple[Any, Any]] = set()
    for i, taint in enumerate(_dicts(taints)):
        p = f"{path}[{i}]"
        key = taint.get("key")
        if key == "":
            e.required(f"{p}.key")
        elif isinstance(key, str):
            e.check(f"{p}.key", key, is_qualified_name(key))
        value = taint.get("value")
        if isinstance(value, str) and value:
            e.check(f"{p}.value", value, is_label_value(value))
        effect = taint.get("effect")
        e.enum(f"{p}.effect", effect, TAINT_EFFECTS, required=True)
        if (key, effect) in seen:
            e.duplicate(p, {"key": key, "effect": effect})
        seen.add((key, effect))


def _validate_node(e: _Errors, obj: Obj) -> None:
    spec = _dict(obj.get("spec"))
    cidrs = [spec["podCIDR"]] if spec.get("podCIDR") else []
    for i, cidr in enumerate(cidrs + list(spec.get("podCIDRs") or [])):
        path = "spec.podCIDR" if i < len(cidrs) else f"spec.podCIDRs[{i - len(cidrs)}]"
        if not _is_cidr(cidr):
            e.invalid(path, cidr, "must be a valid CIDR")
    _validate_taints(e, spec.get("taints"), "spec.taints")
    status = _dict(obj.get("status"))
    for kind in ("capacity", "allocatable"):
        for name, raw in _dict(status.get(kind)).items():
            q = _quantity(raw)
            if q is not None and q < 0:
                e.invalid(f"status.{kind}[{name}]", raw, "must be greater than or equal to 0")
    for i, addr in enumerate(_dicts(status.get("addresses"))):
        if addr.get("type") in ("InternalIP", "ExternalIP") and not _is_ip(addr.get("address") or ""):
            e.invalid(f"status.addresses[{i}].address", addr.get("address"), "must be a valid IP address")


def _validate_node_update(e: _Errors, obj: Obj, old: Obj) -> None:
    old_cidr = _dict(old.get("spec")).get("podCIDR")
    new_cidr = _dict(obj.get("spec")).get("podCIDR")
    if old_cidr and new_cidr != old_cidr:
        e.forbidden("spec.podCIDR", "node updates may not change podCIDR except from \"\" to valid")


def _validate_namespace(e: _Errors, obj: Obj) -> None:
    for i, fin in enumerate(_dict(obj.get("spec")).get("finalizers") or []):
        p = f"spec.finalizers[{i}]"
        if e.check(p, fin, is_qualified_name(fin)) and "/" not in fin and fin not in _STANDARD_FINALIZERS:
            e.invalid(p, fin, "name is neither a standard finalizer name nor is it fully qualified")
    e.enum("status.phase", _dict(obj.get("status")).get("phase"), ("Active", "Terminating"))


def _validate_lease(e: _Errors, obj: Obj) -> None:
    spec = _dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        e.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
    e.non_negative("spec.leaseTransitions", spec.get("leaseTransitions"))


def _validate_endpoints(e: _Errors, obj: Obj) -> None:
    for i, subset in enumerate(_dicts(obj.get("subsets"))):
        p = f"subsets[{i}]"
        for fld in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_dicts(subset.get(fld))):
                ap = f"{p}.{fld}[{j}]"
                ip = addr.get("ip")
                if isinstance(ip, str) and not _is_ip(ip):
                    e.invalid(f"{ap}.ip", ip, "must be a valid IP address")
                if addr.get("hostname"):
                    e.check(f"{ap}.hostname", addr["hostname"], is_dns1123_label(addr["hostname"]))
                if addr.get("nodeName"):
                    e.check(f"{ap}.nodeName", addr["nodeName"], is_dns1123_subdomain(addr["nodeName"]))
        ports = _dicts(subset.get("ports"))
        names: set[str] = set()
        for j, port in enumerate(ports):
            pp = f"{p}.ports[{j}]"
            name = port.get("name")
            if not name:
                if len(ports) > 1:
                    e.required(f"{pp}.name")
            elif e.check(f"{pp}.name", name, is_dns1123_label(name)):
                if name in names:
                    e.duplicate(f"{pp}.name", name)
                names.add(name)
            e.port(f"{pp}.port", port.get("port"))
            e.enum(f"{pp}.protocol", port.get("protocol"), PROTOCOLS)


def _validate_event(e: _Errors, obj: Obj) -> None:
    involved = _dict(obj.get("involvedObject"))
    ns = _dict(obj.get("metadata")).get("namespace")
    inv_ns = involved.get("namespace")
    if inv_ns and ns and inv_ns != ns:
        e.invalid("involvedObject.namespace", inv_ns, "does not match event.namespace")
    e.enum("type", obj.get("type"), ("Normal", "Warning"))
    e.non_negative("count", obj.get("count"))
    reason = obj.get("reason")
    if isinstance(reason, str) and len(reason) > 128:
        e.too_long("reason", 128)


def _validate_pvc(e: _Errors, obj: Obj) -> None:
    _validate_pvc_spec(e, _dict(obj.get("spec")), "spec")
    e.enum("status.phase", _dict(obj.get("status")).get("phase"), ("Pending", "Bound", "Lost"))


def _validate_pvc_update(e: _Errors, obj: Obj, old: Obj) -> None:
    spec, old_spec = copy.deepcopy(_dict(obj.get("spec"))), _dict(old.get("spec"))
    # Expansion edits resources.requests; binding fills volumeName once. Nothing else may change,
    # so mask those two to their old values and compare the rest.
    new_res, old_res = _dict(spec.get("resources")), _dict(old_spec.get("resources"))
    if "requests" in old_res:
        new_res["requests"] = old_res["requests"]
    else:
        new_res.pop("requests", None)
    if not old_spec.get("volumeName"):
        if "volumeName" in old_spec:
            spec["volumeName"] = old_spec["volumeName"]
        else:
            spec.pop("volumeName", None)
    if spec != old_spec:
        e.forbidden("spec", "spec is immutable after creation except resources.requests for bound claims")
    capacity = _quantity(_dict(_dict(old.get("status")).get("capacity")).get("storage") or 0)
    new_req = _dict(_dict(_dict(obj.get("spec")).get("resources")).get("requests")).get("storage")
    requested = _quantity(new_req) if new_req is not None else None
    if capacity and requested is not None and requested < capacity:
        e.forbidden("spec.resources.requests.storage", "field can not be less than status.capacity")


@functools.cache
def _pv_source_fields() -> frozenset[str]:
    schema = model_schema("V1PersistentVolumeSpec")
    return frozenset(k for k, t in schema.fields.items() if t.kind == MODEL and t.model.endswith("VolumeSource"))


def _validate_pv(e: _Errors, obj: Obj) -> None:
    spec = _dict(obj.get("spec"))
    capacity = spec.get("capacity")
    if not capacity:
        e.required("spec.capacity")
    else:
        if "storage" not in capacity:
            e.required("spec.capacity[storage]")
        extra = sorted(set(capacity) - {"storage"})
        if extra:
            e.not_supported("spec.capacity", extra[0], ("storage",))
        q = _quantity(capacity.get("storage", 1))
        if q is not None and q <= 0:
            e.invalid("spec.capacity[storage]", capacity.get("storage"), "must be greater than zero")
    modes = spec.get("accessModes") or []
    if not modes:
        e.required("spec.accessModes")
    for i, mode in enumerate(modes):
        e.enum(f"spec.accessModes[{i}]", mode, ACCESS_MODES)
    e.enum("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"),
           ("Retain", "Recycle", "Delete"))
    e.enum("spec.volumeMode", spec.get("volumeMode"), ("Block", "Filesystem"))
    sc = spec.get("storageClassName")
    if sc:
        e.check("spec.storageClassName", sc, is_dns1123_subdomain(sc))
    sources = [k for k in _pv_source_fields() if spec.get(k) is not None]
    if not sources:
        e.required("spec", "must specify a volume type")
    elif len(sources) > 1:
        e.forbidden(f"spec.{sorted(sources)[1]}", "may not specify more than 1 volume type")
    if spec.get("local") is not None and spec.get("nodeAffinity") is None:
        e.required("spec.nodeAffinity", "Local volumes require node affinity")
    e.enum("status.phase", _dict(obj.get("status")).get("phase"),
           ("Pending", "Available", "Bound", "Released", "Failed"))


def _validate_pv_update(e: _Errors, obj: Obj, old: Obj) -> None:
    spec, old_spec = _dict(obj.get("spec")), _dict(old.get("spec"))
    for key in sorted(_pv_source_fields()):
        if spec.get(key) != old_spec.get(key):
            e.forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation")
            break


# --------------------------------------------------------------------------------------------
# RBAC (pkg/apis/rbac/validation)

Validator = Callable[[_Errors, Obj], None]
UpdateValidator = Callable[[_Errors, Obj, Obj], None]

_RBAC_GROUP = "rbac.authorization.k8s.io"


def _rbac_name(value: str) -> list[str]:
    # RBAC names are path segments only ("system:discovery"); _validate_name checks that part.
    return []


def _validate_policy_rules(e: _Errors, rules: Any, *, namespaced: bool) -> None:
    for i, rule in enumerate(_dicts(rules)):
        p = f"rules[{i}]"
        if not rule.get("verbs"):
            e.required(f"{p}.verbs", "verbs must contain at least one value")
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                e.invalid(f"{p}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                e.invalid(f"{p}.nonResourceURLs", urls, "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not rule.get("apiGroups"):
            e.required(f"{p}.apiGroups", "resource rules must supply at least one api group")
        if not rule.get("resources"):
            e.required(f"{p}.resources", "resource rules must supply at least one resource")


def _validate_role(e: _Errors, obj: Obj) -> None:
    _validate_policy_rules(e, obj.get("rules"), namespaced=True)


def _validate_cluster_role(e: _Errors, obj: Obj) -> None:
    _validate_policy_rules(e, obj.get("rules"), namespaced=False)
    agg = obj.get("aggregationRule")
    if isinstance(agg, dict):
        selectors = agg.get("clusterRoleSelectors")
        if not selectors:
            e.required("aggregationRule.clusterRoleSelectors", "at least one clusterRoleSelector required if aggregationRule is non-nil")
        for i, sel in enumerate(_dicts(selectors)):
            validate_label_selector(e, sel, f"aggregationRule.clusterRoleSelectors[{i}]")


def _validate_binding(e: _Errors, obj: Obj, *, namespaced: bool) -> None:
    ref = _dict(obj.get("roleRef"))
    # An empty apiGroup is what v1 defaulting fills with the RBAC group.
    if ref.get("apiGroup") not in (None, "", _RBAC_GROUP):
        e.not_supported("roleRef.apiGroup", ref.get("apiGroup"), (_RBAC_GROUP,))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    e.enum("roleRef.kind", ref.get("kind"), kinds, required=True)
    name = ref.get("name")
    if not name:
        e.required("roleRef.name")
    else:
        e.check("roleRef.name", name, is_path_segment_name(name))
    for i, subject in enumerate(_dicts(obj.get("subjects"))):
        p = f"subjects[{i}]"
        sname, kind, group = subject.get("name"), subject.get("kind"), subject.get("apiGroup")
        if not sname:
            e.required(f"{p}.name")
        if kind == "ServiceAccount":
            if sname:
                e.check(f"{p}.name", sname, is_dns1123_subdomain(sname))
            if group:
                e.not_supported(f"{p}.apiGroup", group, ("",))
            if not namespaced and not subject.get("namespace"):
                e.required(f"{p}.namespace")
        elif kind in ("User", "Group"):
            if group not in (None, "", _RBAC_GROUP):
                e.not_supported(f"{p}.apiGroup", group, (_RBAC_GROUP,))
        else:
            e.not_supported(f"{p}.kind", kind, ("ServiceAccount", "User", "Group"))


def _validate_role_binding(e: _Errors, obj: Obj) -> None:
    _validate_binding(e, obj, namespaced=True)


def _validate_cluster_role_binding(e: _Errors, obj: Obj) -> None:
    _validate_binding(e, obj, namespaced=False)


def _validate_binding_update(e: _Errors, obj: Obj, old: Obj) -> None:
    if _dict(obj.get("roleRef")) != _dict(old.get("roleRef")):
        e.invalid("roleRef", obj.get("roleRef"), "cannot change roleRef")


_RBAC: dict[str, Validator] = {
    "Role": _validate_role,
    "ClusterRole": _validate_cluster_role,
    "RoleBinding": _validate_role_binding,
    "ClusterRoleBinding": _validate_cluster_role_binding,
}
_RBAC_UPDATE: dict[str, UpdateValidator] = {
    "RoleBinding": _validate_binding_update,
    "ClusterRoleBinding": _validate_binding_update,
}


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

_NAME_FNS: dict[str, NameFn] = {
    "Namespace": is_dns1123_label,
    "Service": is_dns1035_label,  # Service names become DNS labels and env var prefixes
    **dict.fromkeys(("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"), _rbac_name),
}

_CORE: dict[str, Validator] = {
    "Pod": _validate_pod,
    "Service": _validate_service,
    "ConfigMap": _validate_configmap,
    "Secret": _validate_secret,
    "Node": _validate_node,
    "Namespace": _validate_namespace,
    "Endpoints": _validate_endpoints,
    "Event": _validate_event,
    "PersistentVolumeClaim": _validate_pvc,
    "PersistentVolume": _validate_pv,
    "Lease": _validate_lease,
}
_CORE_UPDATE: dict[str, UpdateValidator] = {
    "Pod": _validate_pod_update,
    "Service": _validate_service_update,
    "ConfigMap": _validate_configmap_update,
    "Secret": _validate_secret_update,
    "Node": _validate_node_update,
    "PersistentVolumeClaim": _validate_pvc_update,
    "PersistentVolume": _validate_pv_update,
}
_WORKLOADS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"})


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    # The schema and semantic layers can both flag the same missing field; report it once.
    seen: set[tuple[str, str, str]] = set()
    out = []
    for err in errors:
        key = (err.field, err.type, "" if err.type == REQUIRED else err.message)
        if key not in seen:
            seen.add(key)
            out.append(err)
    return out


_ABSENT = object()


def identical(a: Any, b: Any) -> bool:
    """Equal with the same JSON types all the way down (``1``, ``1.0`` and ``true`` differ)."""
    if a is b:
        return True
    if a != b:
        return False
    try:
        return orjson.dumps(a) == orjson.dumps(b)  # equal dicts in another key order count as different
    except TypeError:
        return False


def _has_type_errors(rt: ResourceType, obj: Obj) -> bool:
    walker = _SchemaWalker()
    walker.walk(obj, SchemaType(MODEL, model=rt.model), "")
    return any(err.type == TYPE_INVALID for err in walker.errors)


def validate(
    rt: ResourceType,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    *,
    options: ValidationOptions | None = None,
    old_valid: bool = False,
) -> list[FieldError]:
    """All the reasons ``obj`` (already defaulted) is not a valid ``rt``; ``old`` makes it an update.

    ``old_valid``: ``old`` is known to have passed this validation (the server stored it), so the
    schema is checked only in the top-level fields that differ from it.
    """
    e = _Errors(options or DEFAULT_OPTIONS)
    if not isinstance(obj, dict):
        return [FieldError("", TYPE_INVALID, f"Invalid value: {_fmt(obj)}: must be of type object")]
    walker = _SchemaWalker()
    if old_valid and isinstance(old, dict):
        walker.walk_changed(obj, old, SchemaType(MODEL, model=rt.model))
    else:
        walker.walk(obj, SchemaType(MODEL, model=rt.model), "")
    e.items.extend(walker.errors)
    # Past a type error the object cannot be decoded (Kubernetes answers 400 before validating);
    # stopping here also lets the semantic checks trust every present field's type.
    if any(err.type == TYPE_INVALID for err in walker.errors):
        return _dedupe(e.items)
    _validate_metadata(e, rt, _dict(obj.get("metadata")), _NAME_FNS.get(rt.kind, is_dns1123_subdomain))
    if rt.group == "apps" and rt.kind in _WORKLOADS:
        _validate_workload(e, rt, obj)
    elif rt.group in ("", "coordination.k8s.io") and rt.kind in _CORE:
        _CORE[rt.kind](e, obj)
    elif rt.group == _RBAC_GROUP and rt.kind in _RBAC:
        _RBAC[rt.kind](e, obj)
    if isinstance(old, dict) and (old_valid or not _has_type_errors(rt, old)):
        # (A stored object that fails the schema predates these rules; comparing against it would
        # only produce noise, so such an update is judged on its own merits.)
        _validate_metadata_update(e, _dict(obj.get("metadata")), _dict(old.get("metadata")))
        if rt.group == "apps" and rt.kind in _WORKLOADS:
            _validate_workload_update(e, rt, obj, old)
        elif rt.group == "" and rt.kind in _CORE_UPDATE:
            _CORE_UPDATE[rt.kind](e, obj, old)
        elif rt.group == _RBAC_GROUP and rt.kind in _RBAC_UPDATE:
            _RBAC_UPDATE[rt.kind](e, obj, old)
    return _dedupe(e.items)
