"""The live shop's database (`seqrec.serve.store.Store`) on a temporary SQLite file."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from seqrec.config import ConfigError
from seqrec.serve.store import Event, Store


@pytest.fixture
def store(tmp_path):
    store = Store(Store.url_for(tmp_path / "bundle", str(tmp_path / "shop.db")))
    yield store
    store.close()


def test_default_database_is_a_file_next_to_the_bundle(tmp_path):
    url = Store.url_for(tmp_path / "runs" / "bundle", None)
    assert url == f"sqlite:///{tmp_path / 'runs' / 'bundle.events.db'}"
    assert Store.url_for("x", "postgresql://u:p@host/shop") == "postgresql://u:p@host/shop"
    assert Store.url_for("x", "shop.db").endswith("/shop.db") and "sqlite:////" in Store.url_for(
        "x", "shop.db"
    )


def test_items_version_counts_every_change_of_the_items(store):
    assert store.items_version() == 0
    store.add_item("new", {"item_id": "new"}, None, None)
    store.set_available("new", False)
    assert store.items_version() == 2
    assert store.set_available("absent", False) is False  # nothing changed
    assert store.set_available("bundle-item", False, create=True)
    assert store.items_version() == 3
    store.add_events([Event("u", "new", "view", 1)])  # events are not item changes
    assert store.items_version() == 3


def test_sqlite_file_is_in_wal_mode_with_its_schema_version(store, tmp_path):
    store.add_events([Event("u", "a", "view", 1)])
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(connection.execute("SELECT key, value FROM seqrec_meta").fetchall())
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(events)")}
    assert meta == {"schema_version": "1", "items_version": "0"}
    assert "events_user_time" in indexes
    with store.engine.connect() as connection:  # each connection commits durably
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


@pytest.mark.parametrize("reads", ["sqlite3", "sqlalchemy"])
def test_user_events_are_the_most_recent_of_the_types_asked_oldest_first(store, reads):
    if reads == "sqlalchemy":  # the path of every other database (PostgreSQL)
        store._sqlite_file = None
    stored = store.add_events(
        [
            Event("u", "a", "view", 10),
            Event("u", "b", "purchase", 30),
            Event("other", "z", "view", 20),
            Event("u", "c", "cart", 20),
            Event("u", "d", "view", 30),  # same time as b, stored later
        ]
    )
    assert stored == 5
    items = [event.item_id for event in store.user_events("u", limit=10)]
    assert items == ["a", "c", "b", "d"]
    assert [e.item_id for e in store.user_events("u", limit=2)] == ["b", "d"]
    assert [e.item_id for e in store.user_events("u", ("view",), limit=10)] == ["a", "d"]
    assert [e.item_id for e in store.user_events("u", since=20, limit=10)] == ["c", "b", "d"]
    assert store.user_events("u", limit=1) == [Event("u", "d", "view", 30)]
    assert store.user_events("nobody") == []
    assert store.user_history("u", ("view", "cart"), since=15) == (["c", "d"], [20, 30])
    assert store.user_history("u", ("purchase",)) == (["b"], [30])  # another statement
    assert store.user_history("nobody") == ([], [])


def test_sqlite_reads_see_every_commit_before_them_from_any_thread(store):
    assert store.user_history("u") == ([], [])  # this thread's reader is open from here on
    store.add_events([Event("u", "a", "view", 1)])
    assert store.user_history("u") == (["a"], [1])
    with ThreadPoolExecutor(2) as pool:  # other threads read through their own connections
        assert pool.submit(store.user_history, "u").result() == (["a"], [1])
        store.add_events([Event("u", "b", "view", 2)])
        assert pool.submit(store.user_history, "u").result() == (["a", "b"], [1, 2])
    store.delete_user("u")
    assert store.user_history("u") == ([], [])
    readers = list(store._opened)
    assert len(readers) >= 2
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the store
        readers[0].execute("SELECT 1")


def test_delete_user_erases_only_that_shopper(store):
    store.add_events([Event("u", "a", "view", 1), Event("u", "b", "view", 2)])
    store.add_events([Event("v", "a", "view", 1)])
    assert store.delete_user("u") == 2
    assert store.user_events("u") == [] and len(store.user_events("v")) == 1
    assert store.delete_user("u") == 0


def test_events_and_items_survive_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    first = Store(url)
    first.add_events([Event("u", "a", "purchase", 5)])
    first.add_item("new", {"title": "Red dress", "price": 9.5}, b"\x89PNG", ".png")
    first.close()
    again = Store(url)
    assert again.user_events("u") == [Event("u", "a", "purchase", 5)]
    [item] = again.stored_items()
    assert (item.item_id, item.fields, item.image, item.image_suffix, item.available) == (
        "new",
        {"title": "Red dress", "price": 9.5},
        b"\x89PNG",
        ".png",
        True,
    )
    again.close()


def test_items_availability_and_upsert(store):
    store.add_item("new", {"title": "A"}, None, None)
    assert store.set_available("new", False) is True
    assert store.unavailable_ids() == {"new"}
    store.add_item("new", {"title": "B"}, b"img", ".jpg")  # replaced, still sold out
    [item] = store.stored_items()
    assert item.fields == {"title": "B"} and item.image == b"img" and not item.available
    assert store.set_available("bundle-item", False) is False  # not stored, not created
    assert store.set_available("bundle-item", False, create=True) is True
    assert store.unavailable_ids() == {"new", "bundle-item"}
    assert store.set_available("new", True) is True
    assert store.unavailable_ids() == {"bundle-item"}
    bundle_row = next(i for i in store.stored_items() if i.item_id == "bundle-item")
    assert bundle_row.fields is None and bundle_row.image is None


def test_database_of_another_schema_version_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    Store(url).close()
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("UPDATE seqrec_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 99"):
        Store(url)


@pytest.mark.parametrize(
    "url, message",
    [
        ("nosuchdialect://x", "cannot be used"),
        ("not a url at all://", "cannot be used"),
        ("sqlite:////nonexistent-dir/sub/shop.db", "cannot be opened"),
    ],
)
def test_database_that_cannot_be_used_is_a_config_error(url, message):
    with pytest.raises(ConfigError, match=message):
        Store(url)
