"""What each config value may be, declared once beside its field, and the one check of it.

A config dataclass declares a field's allowed values with these helpers instead of a bare
default, and `check_config` enforces them (the TOML reader `seqrec.config.config_from_dict`
calls it, and so do the entry points that take a section built in code)::

    loss: str = choice("ce", *LOSSES)  # the default, then every allowed value
    epochs: int = at_least(1, 20)  # minimum, then default
    lr: float = positive(1e-3)  # > 0
    dropout: float = in_range(0.0, 1.0, 0.2, high_open=True)  # 0 <= x < 1
    ks: list[int] = at_least(1, factory=lambda: [10, 12])  # each element >= 1, at least one

A constraint on a list applies to each element. Choice values may be written with ``-`` or
``_`` (``leave-last-basket-out``); the check stores the declared spelling. Values that only make
sense together are checked by the section's ``problems()`` method, which returns
``(field, why)`` pairs. Every error is a `ConfigError` naming the full key path.

This module imports nothing from the sections, so each section module can import it (the
section modules are imported by `seqrec.config`, which re-exports `ConfigError`).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from typing import Any

from seqrec.data.dataset import DataError

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
