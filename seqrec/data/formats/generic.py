"""Any CSV/Parquet pair described by a ``seqrec.toml`` that maps columns to roles."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport
from seqrec.data.formats.common import (
    Problems,
    RawInteractions,
    _as_id_strings,
    _clean_interactions,
    _clean_items,
    _existing_files,
    _is_blank,
    _order_ids,
    _read_table,
    _refuse_odd_column,
    _require_columns,
    _require_file,
    parse_time,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TIME_FORMATS = ("auto", "unix", "iso", "order")


@dataclass
class InteractionsConfig:
    """[interactions] of seqrec.toml."""

    path: str = ""
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None  # None = file order
    time_format: str = "auto"  # "auto", "unix", "iso" or "order"


@dataclass
class ItemsConfig:
    """[items] of seqrec.toml."""

    path: str = ""
    id: str = "item_id"
    text: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    image: str | None = None  # column of image paths, relative to images_dir or absolute
    images_dir: str | None = None  # relative to the TOML's folder
    title: str | None = None
    price: str | None = None


@dataclass
class GenericConfig:
    """A parsed seqrec.toml; paths are resolved against ``root`` (the TOML's folder)."""

    root: Path
    interactions: InteractionsConfig
    items: ItemsConfig | None = None


def _config_section(table: object, cls: type, section: str, toml_path: Path):
    """Build a config dataclass from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise DataError(f"{toml_path}: [{section}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise DataError(
                f"{toml_path}: unknown key {section}.{key} (known keys: {', '.join(known)})"
            )
        default = getattr(cls(), key)
        if isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            want = "a list of strings"
        else:
            ok = isinstance(value, str)
            want = "a string"
        if not ok:
            raise DataError(
                f"{toml_path}: key {section}.{key} must be {want}, got {type(value).__name__}"
            )
        values[key] = value
    if not values.get("path"):
        raise DataError(f"{toml_path}: key {section}.path is required")
    return cls(**values)


def read_config(path: str | Path) -> GenericConfig:
    """Parse a seqrec.toml (or the seqrec.toml inside a directory)."""
    toml_path = Path(path)
    if toml_path.is_dir():
        toml_path = toml_path / "seqrec.toml"
    _require_file(toml_path, "config")
    try:
        with open(toml_path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{toml_path} is not valid TOML: {err}") from err
    unknown = [key for key in raw if key not in ("interactions", "items")]
    if unknown:
        raise DataError(
            f"{toml_path}: unknown key {unknown[0]!r} (known tables: interactions, items)"
        )
    if "interactions" not in raw:
        raise DataError(f"{toml_path}: the [interactions] table is required")
    inter = _config_section(raw["interactions"], InteractionsConfig, "interactions", toml_path)
    if inter.time_format not in TIME_FORMATS:
        raise DataError(
            f"{toml_path}: key interactions.time_format must be one of {', '.join(TIME_FORMATS)}, "
            f"got {inter.time_format!r}"
        )
    items = None
    if "items" in raw:
        items = _config_section(raw["items"], ItemsConfig, "items", toml_path)
    return GenericConfig(root=toml_path.parent.resolve(), interactions=inter, items=items)


def _load_generic_items(
    config: ItemsConfig, root: Path, text_columns: list[str] | None, problems: Problems
) -> tuple[pd.DataFrame, ItemSchema, Path]:
    items_path = _require_file(root / config.path, "items file")
    text = list(text_columns) if text_columns else list(config.text)
    roles = [*text, *config.category, *config.numeric]
    roles += [c for c in (config.image, config.title, config.price) if c]
    _require_columns(items_path, [config.id, *roles])
    frame = _read_table(items_path, problems, strings=[config.id, *text, *config.category])
    items = _clean_items(frame, config.id, items_path, problems)

    for column in dict.fromkeys([*config.numeric, *([config.price] if config.price else [])]):
        numbers = pd.to_numeric(items[column], errors="coerce")
        lost = int((numbers.isna() & items[column].notna()).sum())
        if lost:
            problems.report.notes.append(
                f"{lost} values of {items_path.name} column {column!r} are not numbers; "
                "read as missing"
            )
        items[column] = numbers.astype(np.float64)

    image_column = None
    if config.image:
        base = (root / config.images_dir) if config.images_dir else root
        listed = items[config.image].astype("str")
        relative = ~listed.str.startswith(os.sep).fillna(True).to_numpy(dtype=bool)
        full = listed.where(~relative, str(base.resolve()) + os.sep + listed)
        full = full.where(~_is_blank(items[config.image]), None)
        found = _existing_files(full)
        absent = full.notna().to_numpy() & ~found
        problems.add(
            "missing_image", absent, lambda i: f"{items_path.name}: no file {full.iloc[i]}"
        )
        items["image_path"] = pd.Series(np.where(found, full.to_numpy(), None), dtype=object)
        image_column = "image_path"

    schema = ItemSchema(
        text_columns=text,
        category_columns=list(config.category),
        numeric_columns=list(config.numeric),
        image_column=image_column,
        title_column=config.title,
        price_column=config.price,
    )
    return items, schema, items_path


def load_generic(
    path: str | Path, on_error: str = "skip", text_columns: list[str] | None = None
) -> Dataset:
    """Read the CSV/Parquet files described by a seqrec.toml (the file or its directory)."""
    config = read_config(path)
    report = LoadReport(format="generic")
    problems = Problems(report)

    items_path = None
    if config.items is not None:
        items, schema, items_path = _load_generic_items(
            config.items, config.root, text_columns, problems
        )
    elif text_columns:
        raise DataError(f"text columns given but {path} has no [items] table")

    spec = config.interactions
    inter_path = _require_file(config.root / spec.path, "interactions file")
    needed = [spec.user, spec.item, *([spec.time] if spec.time else [])]
    _require_columns(inter_path, needed)
    strings = [spec.user, spec.item]
    if spec.time and spec.time_format in ("auto", "iso"):
        strings.append(spec.time)
    frame = _read_table(inter_path, problems, strings=strings)
    for role, column in (("user", spec.user), ("item", spec.item)):
        _refuse_odd_column(frame[column], inter_path, role, column, ("list", "struct"))
        frame[column] = _as_id_strings(frame[column])
    if spec.time:
        odd = ("bool", "list", "struct")
        _refuse_odd_column(frame[spec.time], inter_path, "time", spec.time, odd)
        timestamps, bad_time = parse_time(frame[spec.time], spec.time_format)
        time_unit = "order" if spec.time_format == "order" else "second"
    else:
        timestamps, bad_time = np.arange(len(frame), dtype=np.int64), np.zeros(len(frame), bool)
        time_unit = "order"

    if config.items is None:
        seen = frame[spec.item][~_is_blank(frame[spec.item])]
        items = pd.DataFrame({"item_id": _order_ids(seen).to_numpy()})
        schema = ItemSchema()

    interactions, _ = _clean_interactions(
        RawInteractions(frame, inter_path, (spec.user, spec.item, spec.time), timestamps, bad_time),
        items["item_id"],
        problems,
        items_path=items_path,
        drop_duplicates=True,
    )

    problems.check(on_error, config.root.name)
    return Dataset(
        name=config.root.name,
        items=items,
        interactions=interactions,
        schema=schema,
        report=report,
        time_unit=time_unit,
    )
