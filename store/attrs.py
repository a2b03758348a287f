"""Store attributes: validate, encode to HDF5 attributes, decode, and compare between shards."""
from __future__ import annotations

import json
import numbers
from typing import Any, Mapping

from .errors import StoreError
from .schema import COMPATIBLE_ATTRS, JSON_ATTRS, SCHEMA_VERSION, STORE_ATTRS

_INT_ATTRS = ("schema_version", "T", "audio_dim", "visual_dim", "text_dim", "text_len", "patches",
              "n_options")
_POSITIVE = ("T", "audio_dim", "visual_dim", "text_dim", "text_len")


def package_version() -> str:
    """Version of the installed package (``0+unknown`` when not installed)."""
    try:
        from importlib.metadata import version

        return version("shmamba-avqa")
    except Exception:  # PackageNotFoundError or a broken metadata install
        return "0+unknown"


def normalize_attrs(attrs: Mapping[str, Any], where: str = "store attributes") -> dict:
    """Check a writer's attribute dict and return a clean copy (Python values, JSON attrs as
    lists/dicts).  ``schema_version`` and ``package_version`` are filled in when absent."""
    out = dict(attrs)
    out.setdefault("schema_version", SCHEMA_VERSION)
    out.setdefault("package_version", package_version())
    missing = [k for k in STORE_ATTRS if k not in out]
    if missing:
        raise StoreError(f"{where}: missing attribute(s) {missing}; every key of "
                         "store.schema.STORE_ATTRS is required")
    for k in _INT_ATTRS:
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise StoreError(f"{where}: attribute {k!r} must be an integer, got {v!r}")
        out[k] = int(v)
        if out[k] < (1 if k in _POSITIVE else 0):
            raise StoreError(f"{where}: attribute {k!r} must be >= {1 if k in _POSITIVE else 0}, got {v}")
    if out["schema_version"] != SCHEMA_VERSION:
        raise StoreError(f"{where}: schema_version {out['schema_version']} is not this code's "
                         f"schema version {SCHEMA_VERSION}")
    try:
        out["fps"] = float(out["fps"])
    except (TypeError, ValueError):
        raise StoreError(f"{where}: attribute 'fps' must be a number, got {out['fps']!r}") from None
    if not out["fps"] > 0:
        raise StoreError(f"{where}: attribute 'fps' must be > 0, got {out['fps']}")
    for k in ("dataset", "package_version"):
        if not isinstance(out[k], str):
            raise StoreError(f"{where}: attribute {k!r} must be a string, got {out[k]!r}")
    for k in ("answer_vocab", "type_names"):
        v = out[k]
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise StoreError(f"{where}: attribute {k!r} must be a list of strings")
        out[k] = list(v)
    for k in ("encoders", "extractor_config"):
        if not isinstance(out[k], Mapping):
            raise StoreError(f"{where}: attribute {k!r} must be a dict, got {type(out[k]).__name__}")
        try:
            out[k] = json.loads(json.dumps(out[k]))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{where}: attribute {k!r} is not JSON-serialisable: {exc}") from None
    return out


def write_attrs(h5obj, attrs: Mapping[str, Any]) -> None:
    """Write store attributes onto an h5py object (JSON attrs as JSON strings)."""
    for k, v in attrs.items():
        h5obj.attrs[k] = json.dumps(v) if k in JSON_ATTRS else v


def read_attrs(h5obj) -> dict:
    """All attributes of an h5py object as Python values (JSON attrs decoded)."""
    out: dict[str, Any] = {}
    for k, v in h5obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        if k in JSON_ATTRS and isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        out[k] = v
    return out


def store_attrs_of(attrs: Mapping[str, Any]) -> dict:
    """Just the store attributes (drops shard/entry bookkeeping such as ``n_videos``)."""
    return {k: attrs[k] for k in STORE_ATTRS if k in attrs}


def attr_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Names of :data:`COMPATIBLE_ATTRS` on which ``a`` and ``b`` disagree (missing counts)."""
    diff = []
    for k in COMPATIBLE_ATTRS:
        if k not in a or k not in b or json.dumps(a[k], sort_keys=True) != json.dumps(b[k], sort_keys=True):
            diff.append(k)
    return diff


def incompatibility(a: Mapping[str, Any], a_name: str, b: Mapping[str, Any], b_name: str) -> str | None:
    """A message naming the first attribute on which two files disagree, or ``None``."""
    diff = attr_differences(a, b)
    if not diff:
        return None
    k = diff[0]
    more = f" (also differ: {diff[1:]})" if len(diff) > 1 else ""
    return (f"{a_name}: attribute {k!r} is {a.get(k, '<missing>')!r} but {b_name} has "
            f"{b.get(k, '<missing>')!r}{more}")
