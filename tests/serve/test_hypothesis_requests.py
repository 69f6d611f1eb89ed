"""Generated requests to every endpoint, in process: never a 5xx, every answer strict JSON (no
NaN or Infinity) with a message when 4xx, at most k recommendations; non-finite numbers in a
body are refused with a 422 naming them, whatever JSON content type the body is sent as."""

from __future__ import annotations

import json
import math
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seqrec.bundle import load_bundle
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.store import Store
from seqrec.serve.strict_json import NonFiniteNumber, loads_strict

MAX_BODY = 4096
PLAIN = {"Content-Type": "application/json"}
PATCH = {"Content-Type": "application/merge-patch+json"}  # another JSON type
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
OTHER_TYPES = ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]
FEW = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def client(bundle_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hypothesis_serve")
    (folder / "token").write_text("s3cret\n")  # write endpoints configured: 401 without it
    config = ServeConfig(
        max_history=30, max_exclude=30, max_body_bytes=MAX_BODY, token_file=str(folder / "token")
    )
    store = Store(f"sqlite:///{folder / 'events.db'}")
    with TestClient(create_app(load_bundle(bundle_path), config, store=store)) as http:
        yield http
    store.close()


def refuse(literal):
    raise AssertionError(f"answer has {literal}, which JSON has not")


def checked(response) -> object:
    """The answer's JSON (None for the page or an image), after checking the answer is 2xx or
    4xx, and strict JSON with a message when 4xx."""
    status = response.status_code
    assert 200 <= status < 300 or 400 <= status < 500, (status, response.text)
    if status < 400 and not response.headers["content-type"].startswith("application/json"):
        return None
    body = json.loads(response.content, parse_constant=refuse)  # strict: no NaN, Infinity
    if status >= 400:
        assert isinstance(body, dict) and body["detail"], body
    return body


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def has_non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(has_non_finite(v) for v in value)
    return False


# --- strategies ------------------------------------------------------------------------------

KNOWN_IDS = [f"P{i:05d}" for i in range(1, 30)]  # ids of the tiny demo shop
texts = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates, empty, unicode
ids = st.one_of(st.sampled_from(KNOWN_IDS), texts)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.floats(),  # NaN, Infinity and -Infinity included
    texts,
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "history": st.lists(ids, max_size=8) | junk,
        "k": st.integers(-3, 120) | st.floats() | junk,
        "exclude": st.lists(ids, max_size=8) | junk,
        "remove_seen": st.none() | st.booleans() | junk,
    },
)
extra = st.dictionaries(texts, junk, max_size=2)
long_lists = st.builds(
    lambda name, n: {name: KNOWN_IDS[:1] * n},
    st.sampled_from(["history", "exclude"]),
    st.integers(25, 900),
)
recommend_bodies = st.one_of(
    fields,
    st.builds(lambda extra, fields: {**extra, **fields}, extra, fields),
    long_lists,  # over a cap (413), or over the size limit (413)
    junk,
)
numbers_as_text = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e999", "", " 3", "0x10", "1_0"]),
    texts,
)
query_params = st.fixed_dictionaries(
    {}, optional={"q": texts, "offset": numbers_as_text, "limit": numbers_as_text, "x": texts}
)


def encode(value, ascii_only: bool) -> bytes:
    """JSON as Python writes it: NaN, Infinity and -Infinity for non-finite floats."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")


# --- properties ------------------------------------------------------------------------------


@FEW
@given(body=recommend_bodies, ascii_only=st.booleans(), content_type=st.sampled_from(JSON_TYPES))
def test_recommend_answers_any_json_body(client, body, ascii_only, content_type):
    raw = encode(body, ascii_only)
    response = client.post("/recommend", content=raw, headers={"Content-Type": content_type})
    answer = checked(response)
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: what was covered
    if has_non_finite(body) and len(raw) <= MAX_BODY and is_utf8(raw):
        assert response.status_code == 422
        assert "non-finite numbers" in answer["detail"][0]["msg"]
    if response.status_code == 200:
        assert len(answer["items"]) <= body.get("k", 12)
        assert not {item["item_id"] for item in answer["items"]} & set(body.get("exclude", []))


@FEW
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(["/recommend", "/items", "/items/P00001", "/health", "/", "/nope"]),
    raw=st.one_of(
        st.binary(max_size=64),
        recommend_bodies.map(lambda body: encode(body, True)[:-1]),  # cut short
        st.sampled_from([b"NaN", b"-Infinity", b"1e999", b'{"k": 1e999}', b"[" * 5000]),
    ),
    content_type=st.sampled_from([*JSON_TYPES, *OTHER_TYPES, None]),
)
def test_any_bytes_to_any_endpoint(client, method, path, raw, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    checked(client.request(method, path, content=raw, headers=headers))


@FEW
@given(
    path=st.one_of(
        st.sampled_from(["/items", "/health", "/recommend"]),
        ids.map(lambda item_id: f"/items/{quote(item_id, safe='', errors='surrogatepass')}"),
        ids.map(lambda item_id: f"/items/{quote(item_id, safe='', errors='surrogatepass')}/image"),
    ),
    params=query_params,
)
def test_any_query_to_any_endpoint(client, path, params):
    query = "&".join(
        f"{quote(name)}={quote(value, errors='surrogatepass')}" for name, value in params.items()
    )
    answer = checked(client.get(f"{path}?{query}"))
    if answer is None:
        assert path.endswith("/image")
    elif path == "/items" and "items" in answer:
        assert len(answer["items"]) <= min(100, answer["total"])


# --- non-finite numbers, case by case ----------------------------------------------------------


@pytest.mark.parametrize("headers", [PLAIN, PATCH], ids=["json", "merge-patch+json"])
@pytest.mark.parametrize(
    "raw, loc",
    [
        (b'{"history": ["P00001"], "k": Infinity}', ["body", "k"]),
        (b'{"history": [NaN]}', ["body", "history", 0]),
        (b'{"history": ["P00001"], "exclude": ["P00002", NaN]}', ["body", "exclude", 1]),
        (b'{"history": ["P00001"], "k": -Infinity}', ["body", "k"]),
        (b'{"k": 1e999}', ["body", "k"]),  # beyond the float range: read as Infinity
        (b'{"history": [], "notes": {"a": [1, -Infinity]}}', ["body", "notes", "a", 1]),
        (b'{"k": NaN, "k": 3}', ["body"]),  # a repeated key, where the NaN is lost
        (b"NaN", ["body"]),
    ],
)
def test_non_finite_numbers_are_refused_with_422(client, raw, loc, headers):
    response = client.post("/recommend", content=raw, headers=headers)
    assert response.status_code == 422
    (error,) = checked(response)["detail"]
    assert error["loc"] == loc
    assert "non-finite numbers" in error["msg"] and "not accepted" in error["msg"]


@pytest.mark.parametrize(
    "raw, headers, message",
    [
        (b"\xff\xfe history", {"Content-Type": "text/plain"}, "valid dictionary"),
        (b"\xff\xfe history", {}, "valid dictionary"),
        (b'{"history": ["\\ud800"]}', PLAIN, "valid string"),  # a lone surrogate
        (b'{"history": [], "\\udc00": 1}', PATCH, "valid string"),  # in a key
    ],
)
def test_inputs_json_cannot_carry_are_refused_with_422(client, raw, headers, message):
    response = client.post("/recommend", content=raw, headers=headers)
    assert response.status_code == 422
    assert message in json.dumps(checked(response)["detail"])


def test_loads_strict_names_the_first_non_finite_number():
    assert loads_strict(b'{"k": 12.0, "x": [1e308, -0.5]}') == {"k": 12.0, "x": [1e308, -0.5]}
    with pytest.raises(NonFiniteNumber) as refused:
        loads_strict(b'{"a": [1, {"b": NaN}], "c": Infinity}')
    assert (refused.value.literal, refused.value.loc) == ("NaN", ("a", 1, "b"))
    assert "a.1.b: non-finite numbers" in str(refused.value)
    with pytest.raises(json.JSONDecodeError):
        loads_strict(b'{"a": nan}')  # not a literal JSON or Python writes
