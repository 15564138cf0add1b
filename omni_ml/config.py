"""Typed configuration: frozen dataclasses built from keyword arguments, a dict or a YAML file.

Each module owns the dataclass of its own settings (``SimulationConfig`` in
``omni_ml.simulate``, ``FeatureConfig`` in ``omni_ml.features`` ...); this module
gives them one way to be read from YAML with a clear error on a misspelt key.
There are no global settings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from omni_ml.exceptions import ConfigError

__all__ = ["check_keys", "from_mapping", "from_yaml", "to_mapping"]

_C = TypeVar("_C")


def from_mapping(cls: type[_C], values: Mapping[str, Any], *, where: str = "config") -> _C:
    """Build the dataclass ``cls`` from a mapping, rejecting unknown keys with a suggestion.

    Nested dataclass fields accept nested mappings; tuple fields accept lists.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Demo:
    ...     horizon_days: int = 30
    >>> from_mapping(Demo, {"horizon_days": 14})
    Demo(horizon_days=14)
    """
    if not dataclasses.is_dataclass(cls):
        msg = f"{cls!r} is not a dataclass"
        raise TypeError(msg)
    if not isinstance(values, Mapping):
        msg = f"{where}: expected a mapping of {cls.__name__} fields, got {type(values).__name__} ({values!r:.80})."
        raise ConfigError(msg)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(values, fields, where=where, what=cls.__name__)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        kwargs[key] = _coerce(hints.get(key), value, where=f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        msg = f"{where}: {exc}"
        raise ConfigError(msg) from exc


def check_keys(values: Mapping[str, Any], known: typing.Iterable[str], *, where: str, what: str) -> None:
    """Raise :class:`ConfigError` naming every key of ``values`` not in ``known``, each with its closest match.

    Examples
    --------
    >>> check_keys({"n_estimator": 5}, ["n_estimators", "seed"], where="model", what="M")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    omni_ml.exceptions.ConfigError: model: unknown key(s) 'n_estimator' (did you mean 'n_estimators'?) for M. ...
    """
    names = list(known)
    unknown = [str(k) for k in values if k not in names]
    if not unknown:
        return
    parts = []
    for k in unknown[:5]:
        close = difflib.get_close_matches(k, names, n=1)
        parts.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    msg = (
        f"{where}: unknown key(s) {', '.join(parts)}{' ...' if len(unknown) > 5 else ''} for {what}. "
        f"Known keys: {', '.join(names)}."
    )
    raise ConfigError(msg)


def _coerce(hint: Any, value: Any, *, where: str) -> Any:
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_mapping(hint, value, where=where)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return from_mapping(arg, value, where=where)  # type: ignore[arg-type]
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return tuple(value)
    if hint is dt.date and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def from_yaml(cls: type[_C], path: str | Path, *, section: str | None = None) -> _C:
    """Read ``cls`` from a YAML file (optionally one top-level ``section`` of it)."""
    p = Path(path)
    if not p.is_file():
        msg = f"config file {str(p)!r} does not exist."
        raise ConfigError(msg)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        msg = f"{p}: not valid YAML ({exc})."
        raise ConfigError(msg) from exc
    if section is not None:
        data = data.get(section, {}) or {}
    if not isinstance(data, Mapping):
        msg = f"{p}: expected a mapping of settings, got {type(data).__name__}."
        raise ConfigError(msg)
    return from_mapping(cls, data, where=f"{p.name}" + (f":{section}" if section else ""))


def to_mapping(obj: Any) -> dict[str, Any]:
    """Flatten a config dataclass to plain Python values (for logging as MLflow params)."""
    out = dataclasses.asdict(obj)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}
