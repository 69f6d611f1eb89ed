"""Config sections: each value declared once beside its field, read from TOML and checked.

A config dataclass declares a field's allowed values with these helpers instead of a bare
default, and `check_config` enforces them (`build_section` calls it, and so do the entry points
that take a section built in code)::

    loss: str = choice("ce", *LOSSES)  # the default, then every allowed value
    epochs: int = at_least(1, 20)  # minimum, then default
    lr: float = positive(1e-3)  # > 0
    dropout: float = in_range(0.0, 1.0, 0.2, high_open=True)  # 0 <= x < 1
    ks: list[int] = at_least(1, factory=lambda: [10, 12])  # each element >= 1, at least one
    path: str = required(not_blank)  # no default: the key must be given

A constraint on a list applies to each element. Choice values may be written with ``-`` or
``_`` (``leave-last-basket-out``); the check stores the declared spelling. Values that only make
sense together are checked by the section's ``problems()`` method, which returns
``(field, why)`` pairs.

`build_section` turns a TOML table into a section: unknown keys, missing required keys and
values of the wrong type are refused, then the declared constraints are checked. Every error is
a `ConfigError` naming the full key path (``train.batch_size = 0 must be >= 1``). It reads the
experiment TOML (`seqrec.config`), a shop's ``seqrec.toml`` (`seqrec.data.formats.generic`) and
the tune space; `read_document` reads such a file, naming it when it is missing or malformed.

This module imports nothing from the sections, so each section module can import it (the
section modules are imported by `seqrec.config`, which re-exports `ConfigError`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import operator
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqrec.data.dataset import DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda", "mps")
BOUNDS = {  # metadata key -> (sign in messages, test)
    "min": (">=", operator.ge),
    "gt": (">", operator.gt),
    "max": ("<=", operator.le),
    "lt": ("<", operator.lt),
}


class ConfigError(DataError):
    """A configuration file or override that cannot be used as it is."""


def _field(default: Any, factory: Callable[[], Any] | None, **metadata: Any) -> Any:
    metadata = {key: value for key, value in metadata.items() if value is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choice(default: Any, *allowed: Any) -> Any:
    """One of ``allowed`` (None passes where the type allows it)."""
    return _field(default, None, choices=tuple(allowed))


def at_least(low: float, default: Any = None, factory: Callable[[], Any] | None = None) -> Any:
    """``>= low``; for a list: each element, and at least one element."""
    return _field(default, factory, min=low, min_items=1)


def positive(default: Any) -> Any:
    """``> 0``: a float that may be tiny but not zero (a learning rate)."""
    return _field(default, None, gt=0)


def in_range(low: float, high: float, default: Any, high_open: bool = False) -> Any:
    """``low <= x <= high`` (``< high`` with ``high_open``)."""
    if high_open:
        return _field(default, None, min=low, lt=high)
    return _field(default, None, min=low, max=high)


def checked(default: Any, check: Callable[[Any], str | None]) -> Any:
    """``check(value)`` returns why the value is refused, or None."""
    return _field(default, None, check=check)


def required(check: Callable[[Any], str | None] | None = None) -> Any:
    """A key every table must give (no default); ``check`` as in `checked`."""
    return dataclasses.field(metadata={} if check is None else {"check": check})


def not_blank(value: Any) -> str | None:
    """Refuses an empty or all-blank string (a path, a column name)."""
    return None if str(value).strip() else "must not be empty"


def device_problem(name: Any) -> str | None:
    """Why ``name`` is not a torch device spelling seqrec uses (auto, cpu, cuda, cuda:N, mps)."""
    kind, colon, index = str(name).partition(":")
    if kind in DEVICES and (not colon or (kind != "auto" and index.isdigit())):
        return None
    return f"is not a device; use one of: {', '.join(DEVICES)} (or cuda:N)"


def device_field(default: str) -> Any:
    """A torch device name (whether this machine has it is checked before training)."""
    return checked(default, device_problem)


# ----------------------------------------------------------------------------------------------
# the check


def check_config(section: Any, where: str = "") -> None:
    """ConfigError naming the first value of ``section`` (a config dataclass, checked
    recursively) outside its declared constraints. Choice values are stored in their declared
    spelling. ``where`` is the section's key path (``"train"``, ``"features.text"``)."""
    prefix = f"{where}." if where else ""
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        key = prefix + spec.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_config(value, key)
        elif spec.metadata and value is not None:
            setattr(section, spec.name, check_value(value, spec.metadata, key))
    problems = getattr(section, "problems", None)
    for name, why in problems() if problems is not None else []:
        value = operator.attrgetter(name)(section)  # a field, or a nested one: item_net.dim
        shown = "" if value is None else f" = {value!r}"
        raise ConfigError(f"{prefix}{name}{shown} {why}")


def check_value(value: Any, rules: Any, key: str) -> Any:
    """``value`` checked against a field's ``rules`` (its metadata), choices canonicalised."""
    if isinstance(value, (list, tuple)):
        if len(value) < rules.get("min_items", 0):
            raise ConfigError(f"{key} must not be empty")
        items = [_check_one(item, rules, f"{key}[{i}]") for i, item in enumerate(value)]
        value = type(value)(items)
    else:
        value = _check_one(value, rules, key)
    check = rules.get("check")
    why = check(value) if check is not None else None
    if why:
        raise ConfigError(f"{key} = {value!r} {why}")
    return value


def _check_one(value: Any, rules: Any, key: str) -> Any:
    if "choices" in rules:
        return _pick(value, rules["choices"], key)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for name, (sign, holds) in BOUNDS.items():
        if name not in rules:
            continue
        if not number or math.isnan(value) or not holds(value, rules[name]):
            raise ConfigError(f"{key} = {value!r} must be {sign} {rules[name]}")
    return value


def _pick(value: Any, allowed: tuple, key: str) -> Any:
    """The allowed value ``value`` names, ``-`` and ``_`` being the same letter."""
    for option in allowed:
        if value == option and type(value) is type(option):
            return option
        if isinstance(value, str) and isinstance(option, str):
            if value.replace("-", "_") == option.replace("-", "_"):
                return option
    names = ", ".join(repr(option) if option == "" else str(option) for option in allowed)
    raise ConfigError(f"{key} = {value!r} is not one of: {names}")


# ----------------------------------------------------------------------------------------------
# reading a file, then a table into a section


# syntax -> (parser of a file's text, its error)
DOCUMENTS: dict[str, tuple[Callable[[str], Any], type[ValueError]]] = {
    "TOML": (tomllib.loads, tomllib.TOMLDecodeError),
    "JSON": (json.loads, json.JSONDecodeError),
}


def read_document(
    path: Path, what: str, syntax: str = "TOML", error: type[DataError] = ConfigError
) -> Any:
    """The parsed TOML or JSON file at ``path``; ``error`` naming it (as ``what``) when it is
    missing, and naming it with the parser's reason when it cannot be read."""
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    parse, invalid = DOCUMENTS[syntax]
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (invalid, UnicodeDecodeError) as reason:
        raise error(f"{path} is not valid {syntax}: {reason}") from None


def build_section(cls: type, values: Any, where: str) -> Any:
    """A checked ``cls`` instance from a TOML table: keys, types, then every declared
    constraint (`check_config`), each error naming its key path."""
    section = _build(cls, values, where)
    check_config(section, where)
    return section


def _build(cls: type, values: Any, where: str) -> Any:
    """A ``cls`` instance from a TOML table, checking keys and types recursively."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table, got {values!r}")
    hints = _hints(cls)
    names = hints.keys()
    kwargs = {}
    for given, value in values.items():
        name = given.replace("-", "_") if isinstance(given, str) else given
        key = f"{where}.{given}" if where else str(given)
        if name not in names:
            raise ConfigError(f"unknown key {key}; known keys: {', '.join(sorted(names))}")
        if name in kwargs:
            raise ConfigError(f"{key} is given twice (as {name} and with hyphens)")
        kwargs[name] = _check_type(value, hints[name], key)
    missing = [name for name in _required(cls) if name not in kwargs]
    if missing:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{prefix}{missing[0]} is required")
    return cls(**kwargs)


def _required(cls: type) -> list[str]:
    """The fields of ``cls`` without a default: keys a table must give."""
    missing = dataclasses.MISSING
    return [
        spec.name
        for spec in dataclasses.fields(cls)
        if spec.default is missing and spec.default_factory is missing
    ]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation of a config dataclass (resolving them is slow)."""
    hints = typing.get_type_hints(cls)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(cls)}


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (and converted where TOML spells it
    otherwise); ConfigError names ``key``."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, hint, key)
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key} must be empty")
    if hint is Any:
        return value
    if origin in (list, tuple):
        return _check_sequence(value, hint, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return value
    return _check_scalar(value, hint, key)


def _check_union(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the first option of ``X | Y`` it fits (a value that only one option can
    hold gets that option's message)."""
    options = typing.get_args(hint)
    if value is None and type(None) in options:
        return None
    options = tuple(option for option in options if option is not type(None))
    if len(options) == 1:
        return _check_type(value, options[0], key)
    for option in options:
        try:
            return _check_type(value, option, key)
        except ConfigError:
            continue
    raise ConfigError(f"{key} = {value!r} does not fit the expected type {hint}")


def _check_scalar(value: Any, hint: Any, key: str) -> Any:
    """A str, int, float or bool (an int where a float is expected becomes a float)."""
    if hint is str and isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()  # a TOML date where a date string is expected
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r} must be a finite number")
    return value


def _check_sequence(value: Any, hint: Any, key: str) -> list | tuple:
    """A list (``list[X]``), a fixed-length tuple (``tuple[X, Y]``) or ``tuple[X, ...]``."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    args = typing.get_args(hint) or (Any,)
    if typing.get_origin(hint) is tuple and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{key} = {value!r} must have {len(args)} values")
    else:
        args = (args[0],) * len(value)
    checked = [
        _check_type(item, arg, f"{key}[{i}]")
        for i, (item, arg) in enumerate(zip(value, args, strict=True))
    ]
    return tuple(checked) if typing.get_origin(hint) is tuple else checked
