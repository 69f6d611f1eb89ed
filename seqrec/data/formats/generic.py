"""Any CSV/Parquet pair described by a ``seqrec.toml`` that maps columns to roles.

The file's keys are the fields of `InteractionsConfig` (``[interactions]``) and `ItemsConfig`
(``[items]``, optional), read by `seqrec.constraints.build_section`: an unknown key, a value of
the wrong type or a missing ``path`` is refused naming the file and the key. ``items.group``
names the column of the product an item is a variant of (`ItemSchema.group_column`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.constraints import (
    ConfigError,
    build_section,
    choice,
    not_blank,
    read_document,
    required,
)
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

TIME_FORMATS = ("auto", "unix", "iso", "order")
TOML_NAME = "seqrec.toml"


@dataclass
class InteractionsConfig:
    """[interactions] of seqrec.toml: one row per purchase (or view, or rating)."""

    path: str = required(not_blank)  # .csv or .parquet, relative to the TOML's folder
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None  # None = file order
    time_format: str = choice("auto", *TIME_FORMATS)


@dataclass
class ItemsConfig:
    """[items] of seqrec.toml: one row per item, each named column given a role."""

    path: str = required(not_blank)  # .csv or .parquet, relative to the TOML's folder
    id: str = "item_id"
    text: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    image: str | None = None  # column of image paths, relative to images_dir or absolute
    images_dir: str | None = None  # relative to the TOML's folder
    title: str | None = None
    price: str | None = None
    group: str | None = None  # items sharing a value are variants of one product


@dataclass
class ShopToml:
    """A seqrec.toml as written: ``[interactions]`` and, optionally, ``[items]``."""

    interactions: InteractionsConfig
    items: ItemsConfig | None = None


@dataclass
class GenericConfig:
    """A parsed seqrec.toml; paths are resolved against ``root`` (the TOML's folder)."""

    root: Path
    interactions: InteractionsConfig
    items: ItemsConfig | None = None


def read_config(path: str | Path) -> GenericConfig:
    """Parse a seqrec.toml (or the seqrec.toml inside a directory); a `ConfigError` names the
    file and the key (``seqrec.toml: items.text must be a list, got 'title'``)."""
    toml_path = Path(path)
    if toml_path.is_dir():
        toml_path = toml_path / TOML_NAME
    values = read_document(toml_path, "config")
    try:
        shop = build_section(ShopToml, values, "")
    except ConfigError as error:
        raise ConfigError(f"{toml_path}: {error}") from None
    return GenericConfig(toml_path.parent.resolve(), shop.interactions, shop.items)


def _load_generic_items(
    config: ItemsConfig, root: Path, text_columns: list[str] | None, problems: Problems
) -> tuple[pd.DataFrame, ItemSchema, Path]:
    items_path = _require_file(root / config.path, "items file")
    text = list(text_columns) if text_columns else list(config.text)
    roles = [*text, *config.category, *config.numeric]
    group = [config.group] if config.group else []
    roles += [c for c in (config.image, config.title, config.price) if c] + group
    _require_columns(items_path, [config.id, *roles])
    strings = [config.id, *text, *config.category, *group]
    frame = _read_table(items_path, problems, strings=strings)
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
        group_column=config.group,
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
