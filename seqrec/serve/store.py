"""The live shop's database: shoppers' events and the items added or taken out of sale.

`Store` wraps a SQLAlchemy Core engine, so any SQLAlchemy URL works (PostgreSQL for several
servers sharing one database); by default it is an SQLite file next to the bundle folder
(`Store.url_for`), opened in WAL mode (readers never wait for the writer) with
``synchronous=FULL``: a call that returned has its rows on disk, so an acknowledged event
survives a crash of the server. Tables are created when absent and the schema version is
recorded in ``seqrec_meta`` (a database of another version is refused, never altered).

Tables:

- ``events``: one row per event (``user_id``, ``item_id``, ``type``, ``timestamp`` in the
  bundle's time units), indexed on (``user_id``, ``timestamp``) for a shopper's recent events.
- ``items``: items added to the service (their item-file fields as JSON, the image as a blob)
  and the availability of any item the service knows; a bundle item has a row only once its
  availability was set (fields None).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from seqrec.constraints import ConfigError

SCHEMA_VERSION = 1
EVENT_TYPES = ("view", "cart", "purchase")
EARLIEST = -(2**62)  # before every timestamp: a read without a window
ITEMS_VERSION = "items_version"  # seqrec_meta key: counts the changes of the items table

metadata = sa.MetaData()
meta_table = sa.Table(
    "seqrec_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("item_id", sa.String(256), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("events_user_time", "user_id", "timestamp"),
)
items_table = sa.Table(
    "items",
    metadata,
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("fields", sa.JSON, nullable=True),  # None: a bundle item (availability only)
    sa.Column("image", sa.LargeBinary, nullable=True),
    sa.Column("image_suffix", sa.String(16), nullable=True),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("added_at", sa.Float, nullable=False),  # seconds since 1970-01-01
)


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    type: str  # one of EVENT_TYPES
    timestamp: int  # in the bundle's time units (Dataset.time_unit)


@dataclass(frozen=True)
class StoredItem:
    item_id: str
    fields: dict[str, Any] | None  # the item file's fields; None for a bundle item
    image: bytes | None
    image_suffix: str | None  # ".jpg", ".png", ...
    available: bool
    added_at: float  # seconds since 1970-01-01


def is_url(db: str) -> bool:
    """Whether ``db`` is a SQLAlchemy URL (``dialect[+driver]://...``) rather than a path."""
    return "://" in db


def sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Per SQLite connection: WAL, durable commits, and waiting on a busy writer."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """Events and items of the live shop in the database at ``url`` (see the module doc)."""

    def __init__(self, url: str):
        try:
            self.engine: Engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
            raise ConfigError(f"event database {url!r} cannot be used: {error}") from None
        self.url = self.engine.url.render_as_string(hide_password=True)
        # `_recent_rows` statements and their compiled forms, by event types
        self._recent: dict[tuple[str, ...], tuple[sa.Select, sa.Compiled]] = {}
        self.local = self.engine.dialect.name == "sqlite"  # a file on this machine
        # a shopper's recent events are read from an SQLite file through plain sqlite3, one
        # connection per reading thread: SQLAlchemy's per-call work costs more than the read
        database = self.engine.url.database if self.local else None
        self._sqlite_file = database if database and database != ":memory:" else None
        self._readers = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        try:
            self.create_tables()
        except sa.exc.OperationalError as error:
            self.engine.dispose()
            raise ConfigError(f"event database {self.url} cannot be opened: {error.orig}") from None

    @staticmethod
    def url_for(bundle_path: str | Path, db: str | None) -> str:
        """The database URL: ``db`` as is when it is a URL, an SQLite file when it is a path,
        and by default ``<bundle name>.events.db`` next to the bundle folder (never inside it:
        the bundle's manifest lists its files)."""
        if db is not None and is_url(db):
            return db
        if db is None:
            bundle = Path(bundle_path).resolve()
            path = bundle.parent / f"{bundle.name}.events.db"
        else:
            path = Path(db).expanduser().resolve()
        return f"sqlite:///{path}"

    def create_tables(self) -> None:
        """The tables when absent, and the schema version: recorded, or checked."""
        try:
            metadata.create_all(self.engine)
        except sa.exc.DatabaseError:  # another process created them meanwhile
            metadata.create_all(self.engine)
        with self.engine.begin() as connection:
            stored = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            if stored is None:
                connection.execute(
                    meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                )
                connection.execute(meta_table.insert().values(key=ITEMS_VERSION, value="0"))
        if stored is not None and stored != str(SCHEMA_VERSION):
            self.engine.dispose()
            raise ConfigError(
                f"event database {self.url} has schema version {stored}; this seqrec reads "
                f"version {SCHEMA_VERSION}"
            )

    # --- events -------------------------------------------------------------------------------

    def add_events(self, events: list[Event]) -> int:
        """Store ``events`` in one transaction (all or none); the number stored."""
        if not events:
            return 0
        rows = [
            {"user_id": e.user_id, "item_id": e.item_id, "type": e.type, "timestamp": e.timestamp}
            for e in events
        ]
        with self.engine.begin() as connection:
            connection.execute(events_table.insert(), rows)  # executemany
        return len(rows)

    def user_events(
        self,
        user_id: str,
        types: tuple[str, ...] = EVENT_TYPES,
        since: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """The most recent ``limit`` events of ``user_id`` of ``types`` at or after ``since``,
        oldest first (events of the same time in the order they were stored)."""
        rows = self._recent_rows(user_id, types, since, limit)
        return [Event(user_id, item, kind, int(when)) for item, kind, when in reversed(rows)]

    def user_history(
        self,
        user_id: str,
        types: tuple[str, ...] = EVENT_TYPES,
        since: int | None = None,
        limit: int = 1000,
    ) -> tuple[list[str], list[int]]:
        """`user_events` as (item ids, timestamps), oldest first: what a recommendation
        reads, without an object per event (read once per request)."""
        rows = self._recent_rows(user_id, types, since, limit)
        return [row[0] for row in reversed(rows)], [int(row[2]) for row in reversed(rows)]

    def _recent_rows(
        self, user_id: str, types: tuple[str, ...], since: int | None, limit: int
    ) -> list:
        """(item_id, type, timestamp) rows, newest first, through one statement per ``types``
        built and compiled once: run by SQLAlchemy, or for an SQLite file, its compiled SQL on
        this thread's own sqlite3 connection (each read sees every commit made before it)."""
        statement, compiled = self._recent_statement(types)
        values = {"user_id": user_id, "since": EARLIEST if since is None else since, "limit": limit}
        if self._sqlite_file is None:
            with self.engine.connect() as connection:
                return list(connection.execute(statement, values).all())
        reader = getattr(self._readers, "connection", None)
        if reader is None:
            reader = sqlite3.connect(self._sqlite_file, check_same_thread=False)
            sqlite_pragmas(reader, None)
            self._readers.connection = reader
            with self._opened_lock:
                self._opened.append(reader)
        parameters = compiled.construct_params(values) or {}
        order = getattr(compiled, "positiontup", None) or ()  # SQLite's "?" placeholders
        return reader.execute(compiled.string, [parameters[name] for name in order]).fetchall()

    def _recent_statement(self, types: tuple[str, ...]) -> tuple[sa.Select, sa.Compiled]:
        """The statement of `_recent_rows` for ``types`` and its form compiled for this engine."""
        if types not in self._recent:
            table = events_table
            kinds: list[sa.BindParameter[str]] = [
                sa.bindparam(f"type_{i}", kind) for i, kind in enumerate(types)
            ]
            statement = (
                sa.select(table.c.item_id, table.c.type, table.c.timestamp)
                .where(
                    table.c.user_id == sa.bindparam("user_id"),
                    table.c.type.in_(kinds),
                    table.c.timestamp >= sa.bindparam("since"),
                )
                .order_by(table.c.timestamp.desc(), table.c.id.desc())
                .limit(sa.bindparam("limit"))
            )
            self._recent[types] = (statement, statement.compile(dialect=self.engine.dialect))
        return self._recent[types]

    def delete_user(self, user_id: str) -> int:
        """Erase every event of ``user_id``; the number erased."""
        with self.engine.begin() as connection:
            result = connection.execute(
                events_table.delete().where(events_table.c.user_id == user_id)
            )
        return int(result.rowcount)

    # --- items --------------------------------------------------------------------------------

    def add_item(
        self,
        item_id: str,
        fields: dict[str, Any] | None,
        image: bytes | None,
        image_suffix: str | None,
    ) -> None:
        """Store item ``item_id`` (replacing what was stored under it; a new row is available,
        an existing one keeps its availability). ``fields`` None: a bundle item's row."""
        values = {
            "fields": fields,
            "image": image,
            "image_suffix": image_suffix,
            "added_at": time.time(),
        }
        with self.engine.begin() as connection:
            updated = connection.execute(
                items_table.update().where(items_table.c.item_id == item_id).values(**values)
            )
            if updated.rowcount == 0:
                connection.execute(
                    items_table.insert().values(item_id=item_id, available=True, **values)
                )
            _bump_items_version(connection)

    def items_version(self) -> int:
        """How many times the items table changed (an item added or its availability set),
        by any server sharing this database: a server re-reads the items when it moved."""
        query = sa.select(meta_table.c.value).where(meta_table.c.key == ITEMS_VERSION)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def stored_items(self) -> list[StoredItem]:
        """Every stored item, in the order they were added."""
        table = items_table
        query = sa.select(
            table.c.item_id,
            table.c.fields,
            table.c.image,
            table.c.image_suffix,
            table.c.available,
            table.c.added_at,
        ).order_by(table.c.added_at, table.c.item_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            StoredItem(item, fields, image, suffix, bool(available), float(added))
            for item, fields, image, suffix, available, added in rows
        ]

    def set_available(self, item_id: str, available: bool, create: bool = False) -> bool:
        """Mark ``item_id`` available or not; False when it is not stored. ``create``: store a
        row for it first when there is none (a bundle item: fields None)."""
        table = items_table
        with self.engine.begin() as connection:
            updated = connection.execute(
                table.update().where(table.c.item_id == item_id).values(available=available)
            )
            if updated.rowcount == 0 and create:
                row = {"item_id": item_id, "available": available, "added_at": time.time()}
                connection.execute(table.insert().values(**row))
            if updated.rowcount or create:
                _bump_items_version(connection)
        return bool(updated.rowcount) or create

    def unavailable_ids(self) -> set[str]:
        """Ids of the items marked not available."""
        query = sa.select(items_table.c.item_id).where(sa.not_(items_table.c.available))
        with self.engine.connect() as connection:
            return set(connection.execute(query).scalars())

    def close(self) -> None:
        """Close the database's connections."""
        with self._opened_lock:
            for reader in self._opened:
                reader.close()
            self._opened.clear()
        self._readers = threading.local()
        self.engine.dispose()


def _bump_items_version(connection: sa.Connection) -> None:
    """Count one change of the items table, in the transaction that made it."""
    table = meta_table
    bumped = connection.execute(
        table.update()
        .where(table.c.key == ITEMS_VERSION)
        .values(value=sa.cast(sa.cast(table.c.value, sa.Integer) + 1, sa.String))
    )
    if bumped.rowcount == 0:
        connection.execute(table.insert().values(key=ITEMS_VERSION, value="1"))
