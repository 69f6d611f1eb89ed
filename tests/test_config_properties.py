"""Property tests of the config reader: whatever a TOML file or ``--set`` holds, reading it either
gives a config whose every value fits its declared constraint, or a ConfigError naming the key."""

import dataclasses
import datetime
import math
import types
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    parse_set,
)


def _leaves(cls: type, where: str = "") -> dict[str, dataclasses.Field]:
    """Every dotted key of a config dataclass -> its field (sections are walked into)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for spec in dataclasses.fields(cls):
        key = f"{where}.{spec.name}" if where else spec.name
        if dataclasses.is_dataclass(hints[spec.name]):
            out.update(_leaves(hints[spec.name], key))
        else:
            out[key] = spec
    return out


LEAVES = _leaves(ExperimentConfig)
SECTIONS = sorted({key.rpartition(".")[0] for key in LEAVES if "." in key})


def _fits(value, hint) -> bool:
    """An independent type check of a read value against its annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in args)
    if hint is type(None):
        return value is None
    if hint is typing.Any:
        return True
    if origin is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    if origin is tuple:
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(_fits(item, arg) for item, arg in zip(value, args, strict=True))
        )
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, float) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def assert_satisfies(section, where: str = "") -> None:
    """Every value of ``section`` fits its type and its declared metadata constraint."""
    hints = typing.get_type_hints(type(section))
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        key = f"{where}.{spec.name}" if where else spec.name
        if dataclasses.is_dataclass(value):
            assert_satisfies(value, key)
            continue
        assert _fits(value, hints[spec.name]), key
        rules = spec.metadata
        if value is None or not rules:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        assert len(items) >= rules.get("min_items", 0), key
        for item in items:
            assert "choices" not in rules or item in rules["choices"], key
            assert "min" not in rules or item >= rules["min"], key
            assert "gt" not in rules or item > rules["gt"], key
            assert "max" not in rules or item <= rules["max"], key
            assert "lt" not in rules or item < rules["lt"], key
        assert "check" not in rules or rules["check"](value) is None, key
    problems = getattr(section, "problems", None)
    assert problems is None or problems() == [], where


def _spellings(key: str) -> st.SearchStrategy[str]:
    return st.sampled_from([key, key.replace("_", "-")])


def _meaningful(key: str) -> st.SearchStrategy:
    """Values near what the field allows: its choices in both spellings, its bounds +- 1."""
    rules = LEAVES[key].metadata
    options = []
    for option in rules.get("choices", ()):
        if isinstance(option, str):
            options += [option, option.replace("_", "-"), option.upper()]
    for bound in ("min", "gt", "max", "lt"):
        if bound in rules:
            options += [rules[bound] - 1, rules[bound], rules[bound] + 1, rules[bound] * 0.5]
    return st.sampled_from(options) if options else st.nothing()


SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2, 10, 12, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["", "auto", "cuda", "cpu", "mps", "cuda:0", "ndcg@10", "mrr", "tpu"]),
    st.dates(),
    st.just(datetime.time(12, 0)),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=6), SCALARS, max_size=3),
)


@st.composite
def overrides(draw) -> dict:
    """A few dotted keys (real ones in either spelling, sections, or unknown) and values."""
    out = {}
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["leaf", "leaf", "leaf", "section", "unknown"]))
        if kind == "leaf":
            key = draw(st.sampled_from(sorted(LEAVES)))
            value = draw(st.one_of(_meaningful(key), VALUES))
            key = draw(_spellings(key))
        elif kind == "section":
            key, value = draw(st.sampled_from(SECTIONS)), draw(VALUES)
        else:
            section = draw(st.sampled_from(["", *SECTIONS]))
            name = draw(st.text("abcxyz_-", min_size=1, max_size=8))
            key, value = f"{section}.{name}" if section else name, draw(VALUES)
        out[key] = value
    return out


def _names_a_key(message: str, keys) -> bool:
    """The message names a given key (either spelling) or a key of its section."""
    for key in keys:
        for spelled in (key, key.replace("-", "_")):
            parts = spelled.split(".")
            section = ".".join(parts[:-1])
            if section and f"{section}." in message:
                return True
            # the key itself, or a table above it named whole ("model.item-net is given twice")
            prefixes = [".".join(parts[:end]) for end in range(min(2, len(parts)), len(parts) + 1)]
            if any(prefix in message for prefix in prefixes):
                return True
    return False


def _nested(flat: dict) -> dict:
    values: dict = {}
    for dotted, value in flat.items():
        table = values
        *parents, last = dotted.split(".")
        for part in parents:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                return values  # a key below a value: keep what was built
        table[last] = value
    return values


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("key", sorted(LEAVES))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_each_key_gives_a_valid_config_or_a_config_error_naming_it(key, data):
    value = data.draw(st.one_of(_meaningful(key), VALUES), label="value")
    spelled = data.draw(_spellings(key), label="key")
    try:
        config = apply_overrides(ExperimentConfig(), {spelled: value})
    except ConfigError as error:
        assert _names_a_key(str(error), [spelled]), str(error)
    else:
        assert_satisfies(config)


@SETTINGS
@given(overrides())
def test_several_keys_give_a_valid_config_or_a_config_error_naming_one(flat):
    try:
        config = apply_overrides(ExperimentConfig(), flat)
    except ConfigError as error:
        assert _names_a_key(str(error), flat), (str(error), flat)
    else:
        assert_satisfies(config)


@SETTINGS
@given(overrides())
def test_toml_tables_give_a_valid_config_or_a_config_error_naming_the_key(flat):
    values = _nested(flat)
    try:
        config = config_from_dict(values)
    except ConfigError as error:
        assert _names_a_key(str(error), flat) or str(error).startswith("["), (str(error), values)
    else:
        assert_satisfies(config)


@SETTINGS
@given(st.sampled_from(sorted(LEAVES)), st.text(max_size=20))
def test_set_pairs_give_a_valid_config_or_a_config_error_naming_the_key(key, raw):
    try:
        config = apply_overrides(ExperimentConfig(), parse_set([f"{key}={raw}"]))
    except ConfigError as error:
        assert key in str(error) or f"{key.rpartition('.')[0]}." in str(error), str(error)
    else:
        assert_satisfies(config)


CHOICE_KEYS = [
    (key, option)
    for key, spec in LEAVES.items()
    for option in spec.metadata.get("choices", ())
    if isinstance(option, str) and "_" in option
]


@pytest.mark.parametrize("key, option", CHOICE_KEYS)
def test_every_choice_is_accepted_in_flag_spelling(key, option):
    value = option.replace("_", "-")
    if key == "model.item_net.modalities":
        value = [value]
    config = apply_overrides(ExperimentConfig(), parse_set([f"{key}={value}"]))
    section = config
    for part in key.split("."):
        section = getattr(section, part)
    assert section == ([option] if isinstance(value, list) else option)
