"""One way to configure everything: typed dataclasses, filled from a TOML/YAML file and then from
command-line overrides, and written back out exactly as resolved.

Used by ``extract`` (ExtractConfig), ``train`` (TrainConfig) and ``model`` (SHMambaConfig); it
knows nothing about any of them.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A config file or override names an unknown field or has a value of the wrong type."""


def read_config_file(path: str | Path) -> dict:
    """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r} (use .toml, .yaml or .json)")
    except ConfigError:
        raise
    except Exception as exc:  # parser errors carry line numbers; keep them
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a table/mapping, got {type(data).__name__}")
    return data


def _describe(tp: Any) -> str:
    """A type as a config error names it: true/false, one of [...], a number, ..."""
    if typing.get_origin(tp) is typing.Literal:
        return f"one of {list(typing.get_args(tp))}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not "
                          + " or ".join(_describe(a) for a in args if a is not type(None)))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type[C], data: dict, where: str = "config") -> C:
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain JSON/TOML-able data."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a table")
    cur[parts[-1]] = value


def resolve(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None,
            base: dict | None = None) -> C:
    """Defaults <- ``base`` <- config file <- ``overrides`` (``{"a.b": v}``; ``None`` values are
    ignored, so unset CLI options leave the file's value alone)."""
    data: dict = json.loads(json.dumps(base or {}))
    if path is not None:
        file_data = read_config_file(path)
        _merge(data, file_data)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    return build(cls, data)


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``--set a.b=3`` style overrides; the value is parsed as JSON when it can be, else a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def field_docs(cls: type) -> dict[str, str]:
    """The documentation of each field of dataclass ``cls``: the ``#:`` comment lines just above
    it in the source (the Sphinx convention), joined into one line."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        m = _FIELD_LINE.match(text)
        if m and pending:
            docs[m.group(1)] = " ".join(pending)
        pending = []
    return docs


_FIELD_LINE = re.compile(r"([A-Za-z_]\w*)\s*:")
