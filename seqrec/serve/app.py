"""FastAPI app serving a bundle: recommendations, the catalogue, item images and a demo page.

Endpoints (schema at ``/openapi.json``, docs at ``/docs``):

- ``POST /recommend``: ``{history, k, exclude, remove_seen}`` -> ranked items with scores. Item
  ids the bundle does not know are ignored and listed back in ``unknown_ids``; a history with
  no known item gets the popularity ranking (``source = "popularity"``). The model reads the
  last ``max_len`` known items, exactly as in evaluation.
- ``GET /items`` (catalogue page, best-sellers first, optional search), ``GET /items/{id}``,
  ``GET /items/{id}/image``, ``GET /health``, and ``GET /`` (the demo shop page).

Rankings are `seqrec.evaluate.top_k` of the scores `Bundle.scorer` gives (run on the items
scoring at least the k-th best, which gives the same list: `Recommender.top`), so a served list
is the one ``seqrec eval`` ranks. Scoring is faster than calling the scorer per request: the
item matrices are computed once at start-up (the scorer recomputes them on every call), the
whole scoring graph runs in ONNX Runtime when its scores agree with the eager model's to 1e-5,
else as a bit-identical TorchScript trace, else eager (`seqrec.serve.scoring`), and concurrent
requests are ranked together: `MicroBatcher` hands the requests queued while the worker thread
was busy to the model as one [B, max_len] batch. (Batches of different sizes may round a score
differently in the last bit, as evaluation's own batches of 256 do; ONNX Runtime, in the last
few digits.) A well-formed ``POST /recommend`` skips FastAPI's own layers (`RecommendFastPath`:
same request model, same answer code); every other request, bad ones included, goes through
FastAPI.

Bad requests are 4xx with a ``detail`` message: 404 unknown item, 413 body larger than
``max_body_bytes`` or a history / exclude list over its cap, 422 malformed JSON or values (a
non-finite number, which JSON has not but Python's `json` reads, included:
`seqrec.serve.strict_json`). No request is answered 500.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqrec.bundle import Bundle, load_bundle
from seqrec.data.dataset import DataError
from seqrec.evaluate import top_k
from seqrec.serve.page import PAGE_HTML
from seqrec.serve.scoring import served_scorer
from seqrec.serve.strict_json import (
    StrictJSONRoute,
    http_error,
    loads_strict,
    validation_failed,
)

MAX_K = 100
DISPLAY_COLUMNS = ("item_id", "title", "price", "image_path")
logger = logging.getLogger(__name__)
ENV_BUNDLE = "SEQREC_SERVE_BUNDLE"  # how `run_server` passes its arguments to worker processes
ENV_CONFIG = "SEQREC_SERVE_CONFIG"
ENV_THREADS = "SEQREC_SERVE_THREADS"


@dataclass
class ServeConfig:
    """Request limits and batching of the service."""

    max_history: int = 1000  # longer request histories are refused (413); the model reads max_len
    max_exclude: int = 1000  # longer exclude lists are refused (413)
    max_body_bytes: int = 64 * 1024  # larger request bodies are refused (413)
    max_batch: int = 64  # most requests scored together
    batch_wait_ms: float = 0.0  # extra wait to gather a batch; 0: batch what queued meanwhile
    warmup: bool = True  # score one history at start-up so the first request is not slow
    thread: bool = True  # rank in a worker thread (else in the event loop, blocking it)
    # how scores are computed: "auto" | "onnx" | "torchscript" | "eager" (seqrec.serve.scoring)
    runtime: str = "auto"


# --- request and response schemas ----------------------------------------------------------

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _integral(value):
    """12.0 is an integer in JSON Schema: accept it where strict mode would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    history: list[ItemId] = Field(
        default_factory=list,
        description="Item ids the shopper interacted with, most recent last (at most "
        f"{ServeConfig.max_history} by default, else 413). Unknown ids are ignored.",
    )
    k: Annotated[int, BeforeValidator(_integral)] = Field(
        12, ge=1, le=MAX_K, description="Number of items to return."
    )
    exclude: list[ItemId] = Field(
        default_factory=list, description="Item ids never to recommend (unknown ids are ignored)."
    )
    remove_seen: bool | None = Field(
        None, description="Never recommend history items; default: the bundle's eval protocol."
    )


class Recommendation(BaseModel):
    item_id: str
    score: float
    title: str
    price: float | None
    image_url: str | None


class RecommendResponse(BaseModel):
    items: list[Recommendation]
    source: Literal["model", "popularity"] = Field(
        description="model: ranked from the history; popularity: no known history item."
    )
    unknown_ids: list[str] = Field(description="History ids the bundle does not know (ignored).")
    history_used: int = Field(description="Known history items the model read (<= max_len).")


class ItemSummary(BaseModel):
    item_id: str
    title: str
    price: float | None
    image_url: str | None


class ItemDetail(ItemSummary):
    popularity: float = Field(description="Training interactions of the item.")
    text: dict[str, str | None] = Field(description="The item's text columns.")


class ItemPage(BaseModel):
    total: int = Field(description="Items matching the search.")
    offset: int
    items: list[ItemSummary]


class Health(BaseModel):
    status: Literal["ok"]
    dataset: str
    model: str
    n_items: int
    max_len: int
    runtime: Literal["onnx", "torchscript", "eager"] = Field(
        description="What computes the scores (seqrec.serve.scoring)."
    )
    requests_scored: int
    batches: int
    ranking_cpu_s: float = Field(description="CPU seconds spent scoring and ranking.")


class Problem(BaseModel):
    detail: str


# --- scoring ---------------------------------------------------------------------------------


@dataclass
class RankQuery:
    history: np.ndarray  # [H] known item indices, most recent last
    k: int
    exclude: np.ndarray  # [E] item indices removed from the ranking


@dataclass
class Ranking:
    items: np.ndarray  # [k'] item indices, best first
    scores: np.ndarray  # [k']
    source: str  # "model" | "popularity"


def _none_if_nan(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


class Recommender:
    """A bundle ready to serve: id lookup, display records and precomputed item matrices."""

    def __init__(self, bundle: Bundle, runtime: str = "auto"):
        self.bundle = bundle
        self.max_len = bundle.config.model.max_len
        self.n_items = bundle.n_items
        self.index = bundle.item_index()
        self.scorer, self.runtime = served_scorer(bundle.scorer(), runtime)
        self.popularity = np.asarray(bundle.popularity, dtype=np.float32)  # [N]
        self.remove_seen = bool(bundle.manifest.get("remove_seen", False))
        self.by_popularity = np.argsort(-self.popularity, kind="stable")  # catalogue order

        items = bundle.items
        self.text_columns = [c for c in items.columns if c not in DISPLAY_COLUMNS]
        self.records = [
            {
                "item_id": item_id,
                "title": str(title),
                "price": _none_if_nan(float(price)) if price is not None else None,
                "image_url": (
                    f"/items/{quote(item_id, safe='')}/image" if isinstance(image, str) else None
                ),
            }
            for item_id, title, price, image in zip(
                items["item_id"], items["title"], items["price"], items["image_path"], strict=True
            )
        ]
        self.search_text = (
            items[["title", *self.text_columns]].fillna("").astype(str).agg(" ".join, axis=1)
        ).str.lower()

    def lookup(self, item_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Known item indices (in order) and the ids the bundle does not know."""
        known, unknown = [], []
        for item_id in item_ids:
            idx = self.index.get(item_id)
            if idx is None:
                unknown.append(item_id)
            else:
                known.append(idx)
        return np.asarray(known, dtype=np.int64), unknown

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """[B, N] float32, the scores of `Bundle.scorer().score`, its raw scores computed with
        the item matrices precomputed once, by `self.runtime` (`seqrec.serve.scoring`)."""
        return self.scorer.score(histories)

    def rank(self, queries: list[RankQuery]) -> list[Ranking]:
        """Rank each query: one model batch for those with history, popularity for the rest."""
        rows = [i for i, query in enumerate(queries) if len(query.history)]
        scores = self.score([queries[i].history for i in rows]) if rows else None
        row_of = {query_index: row for row, query_index in enumerate(rows)}
        rankings = []
        for i, query in enumerate(queries):
            if i in row_of:
                values, source = scores[row_of[i]], "model"
            else:
                values, source = self.popularity, "popularity"
            items = self.top(values, query.k, query.exclude)
            rankings.append(Ranking(items, values[items], source))
        return rankings

    def top(self, values: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
        """The ``k`` best items by ``values`` [N] (`top_k`), never an excluded one."""
        if len(exclude):
            k = min(k, self.n_items - len(np.unique(exclude)))  # excluded items are never served
        return top_k(values[None], max(k, 0), [exclude] if len(exclude) else None)[0]


class MicroBatcher:
    """Ranks concurrent requests together in one worker thread.

    A request is queued; while the worker ranks a batch, newly arrived requests wait, and the
    next batch takes all of them (up to ``max_batch``), optionally after ``wait_s`` more. A lone
    request is thus ranked at once, and under load the model sees [B, L] batches. The event loop
    keeps parsing requests while the worker runs (torch and numpy release the GIL).
    """

    def __init__(self, rank, max_batch: int = 64, wait_s: float = 0.0, thread: bool = True):
        self._rank = rank
        self.max_batch, self.wait_s = max_batch, wait_s
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-rank") if thread else None
        )
        self._loop = None
        self._pending: list = []
        self._task = None
        self.queries = 0
        self.batches = 0
        self.rank_cpu_s = 0.0  # CPU seconds spent ranking

    def _timed_rank(self, queries):
        start = time.thread_time()
        try:
            return self._rank(queries)
        finally:
            self.rank_cpu_s += time.thread_time() - start

    async def submit(self, query):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (e.g. another test client): start afresh
            self._loop, self._pending, self._task = loop, [], None
        future = loop.create_future()
        self._pending.append((query, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                if self.wait_s:
                    await asyncio.sleep(self.wait_s)
                batch = [job for job in self._pending[: self.max_batch] if not job[1].done()]
                del self._pending[: self.max_batch]
                if not batch:
                    continue
                self.queries += len(batch)
                self.batches += 1
                queries = [query for query, _ in batch]
                try:
                    if self._executor is None:
                        results = self._timed_rank(queries)
                    else:
                        results = await loop.run_in_executor(
                            self._executor, self._timed_rank, queries
                        )
                except Exception as error:  # handed to the requests, which answer 500
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None


# --- the app ---------------------------------------------------------------------------------


class BodySizeLimit:
    """ASGI middleware: 413 with a JSON ``detail`` for request bodies over ``max_bytes``.

    Refused up front when Content-Length says so, else counted while the body streams in.
    (Starlette's own limit answers in plain text; this keeps every error ``{"detail": ...}``.)
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.message = f"request body over {max_bytes} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"detail": self.message}, 413)(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.message)
            return message

        return await self.app(scope, counted_receive, send)


# content types the fast path takes (others, JSON ones included, go through FastAPI)
JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")


class RecommendFastPath:
    """ASGI middleware: a well-formed ``POST /recommend`` answered without FastAPI's layers.

    FastAPI's routing, request object, dependency solving and response classes cost 0.09 to
    0.15 ms of CPU per request, a tenth of a lone request's cost (``benchmarks/serve_asgi.py``;
    figures in benchmarks/results/serve_load.md). Here the body is read, parsed and validated
    with the same `RecommendRequest` model the route declares (and the same strict JSON as its
    route, `loads_strict`), and ``answer`` (the route's own code) writes the response. Anything
    else (another route, a body that is not JSON, over the size limit or invalid, a request over
    a cap) goes, with the body read so far, to the FastAPI app, which answers it exactly as
    without this path and still documents the route in the OpenAPI schema.
    """

    def __init__(self, app, answer, max_bytes: int):
        self.app, self.answer, self.max_bytes = app, answer, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/recommend" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        content_type = content_length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
        if content_type not in JSON_TYPES or (
            content_length is not None
            and (not content_length.isdigit() or int(content_length) > self.max_bytes)
        ):
            return await self.app(scope, receive, send)
        messages, size, more = [], 0, True
        while more and size <= self.max_bytes:
            messages.append(await receive())
            if messages[-1]["type"] != "http.request":  # the client left
                return await self.app(scope, replay(messages, receive), send)
            size += len(messages[-1].get("body", b""))
            more = messages[-1].get("more_body", False)
        if size > self.max_bytes:  # over the limit while streaming in: BodySizeLimit's 413
            return await self.app(scope, replay(messages, receive), send)
        body = b"".join(message.get("body", b"") for message in messages)
        try:
            request = RecommendRequest.model_validate(loads_strict(body))
        except Exception:  # not JSON (or nested too deep, or NaN), invalid values: 4xx from FastAPI
            return await self.app(scope, replay(messages, receive), send)
        try:
            answer = await self.answer(request)
        except HTTPException:  # over a cap (413)
            return await self.app(scope, replay(messages, receive), send)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def replay(messages: list[dict], receive):
    """An ASGI ``receive`` giving ``messages`` again, then what ``receive`` gives."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


def create_app(bundle: str | Path | Bundle, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``bundle`` (a folder from ``seqrec train`` or a loaded Bundle)."""
    config = config or ServeConfig()
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    rec = Recommender(loaded, runtime=config.runtime)
    batcher = MicroBatcher(rec.rank, config.max_batch, config.batch_wait_ms / 1000, config.thread)
    if config.warmup:
        rec.rank([RankQuery(np.zeros(1, dtype=np.int64), 1, np.zeros(0, dtype=np.int64))])

    app = FastAPI(
        title="seqrec",
        summary=f"Sequential recommendations from the bundle {loaded.path.name}",
        description=__doc__.split("\n\n")[0],
    )
    app.router.route_class = StrictJSONRoute  # JSON bodies with NaN or Infinity: 422
    app.add_exception_handler(RequestValidationError, validation_failed)  # error bodies: JSON
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.state.recommender = rec
    app.state.batcher = batcher
    app.state.config = config
    errors = {code: {"model": Problem} for code in (400, 404, 413)}

    def known(item_id: str) -> int:
        idx = rec.index.get(item_id)
        if idx is None:
            raise HTTPException(404, f"unknown item id {item_id!r}")
        return idx

    async def answer(request: RecommendRequest) -> bytes:
        """The JSON body answering ``request`` (of the RecommendResponse shape); 413 over a cap."""
        if len(request.history) > config.max_history:
            raise HTTPException(
                413, f"history has {len(request.history)} items; at most {config.max_history}"
            )
        if len(request.exclude) > config.max_exclude:
            raise HTTPException(
                413, f"exclude has {len(request.exclude)} items; at most {config.max_exclude}"
            )
        history, unknown = rec.lookup(request.history)
        exclude, _ = rec.lookup(request.exclude)
        remove_seen = rec.remove_seen if request.remove_seen is None else request.remove_seen
        if remove_seen and len(history):
            exclude = np.concatenate([exclude, history])
        ranking = await batcher.submit(RankQuery(history, request.k, exclude))
        items = [
            {**rec.records[idx], "score": score}
            for idx, score in zip(ranking.items.tolist(), ranking.scores.tolist(), strict=True)
        ]
        return json.dumps(
            {
                "items": items,
                "source": ranking.source,
                "unknown_ids": unknown,
                "history_used": min(len(history), rec.max_len),
            }
        ).encode()

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={400: errors[400], 413: errors[413]},
    )
    async def recommend(request: RecommendRequest):
        """Top-k items after a browsing history (most recent last)."""
        # already of the RecommendResponse shape: sent as is, without FastAPI's re-validation
        return Response(await answer(request), media_type="application/json")

    app.add_middleware(RecommendFastPath, answer=answer, max_bytes=config.max_body_bytes)

    @app.get("/items", response_model=ItemPage)
    def list_items(
        q: Annotated[str | None, Query(max_length=200, description="Search text.")] = None,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 36,
    ):
        """A page of the catalogue, best-sellers first; ``q`` keeps items whose text has it."""
        order = rec.by_popularity
        if q and q.strip():
            hits = rec.search_text.str.contains(q.strip().lower(), regex=False).to_numpy()
            order = order[hits[order]]
        page = order[offset : offset + limit]
        return {"total": len(order), "offset": offset, "items": [rec.records[i] for i in page]}

    @app.get("/items/{item_id}", response_model=ItemDetail, responses={404: errors[404]})
    def get_item(item_id: str):
        """One item: display fields, text columns and training popularity."""
        idx = known(item_id)
        row = loaded.items.iloc[idx]
        text = {c: _none_if_nan(row[c]) for c in rec.text_columns}
        text = {c: None if v is None else str(v) for c, v in text.items()}
        return {**rec.records[idx], "popularity": float(rec.popularity[idx]), "text": text}

    @app.get(
        "/items/{item_id}/image",
        response_class=FileResponse,
        responses={200: {"content": {"image/*": {}}}, 404: errors[404]},
    )
    def get_image(item_id: str):
        """The item's image file."""
        path = loaded.items["image_path"].iloc[known(item_id)]
        if not path or not os.path.isfile(path):
            raise HTTPException(404, f"item {item_id!r} has no image")
        return FileResponse(path)

    @app.get("/health", response_model=Health)
    def health():
        """Liveness and what is served."""
        return {
            "status": "ok",
            "dataset": str(loaded.manifest.get("dataset", "")),
            "model": loaded.config.model.model,
            "n_items": rec.n_items,
            "max_len": rec.max_len,
            "runtime": rec.runtime,
            "requests_scored": batcher.queries,
            "batches": batcher.batches,
            "ranking_cpu_s": batcher.rank_cpu_s,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(PAGE_HTML)

    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes; arguments come from `run_server`."""
    torch.set_num_threads(int(os.environ.get(ENV_THREADS, "1")))
    config = ServeConfig(**json.loads(os.environ.get(ENV_CONFIG, "{}")))
    app = create_app(os.environ[ENV_BUNDLE], config)
    gc.freeze()  # the bundle's many objects stay out of the collector's scans (shorter pauses)
    return app


def run_server(
    bundle_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    threads: int = 1,
    config: ServeConfig | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``bundle_path`` under uvicorn; each of ``workers`` processes loads the bundle once
    and scores with ``threads`` torch threads."""
    import uvicorn

    bundle_path = Path(bundle_path).resolve()
    if not (bundle_path / "bundle.json").is_file():
        raise DataError(f"{bundle_path} is not a complete seqrec bundle (no bundle.json)")
    os.environ[ENV_BUNDLE] = str(bundle_path)
    os.environ[ENV_CONFIG] = json.dumps(asdict(config or ServeConfig()))
    os.environ[ENV_THREADS] = str(threads)
    if workers == 1:
        app = app_from_env()
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        return
    from uvicorn.supervisors import Multiprocess

    server_config = uvicorn.Config(
        "seqrec.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
    Multiprocess(server_config, sockets=[tcp_listener(server_config)]).run()


def tcp_listener(server_config) -> socket.socket:
    """The listening socket of a multi-worker uvicorn, declared TCP.

    uvicorn binds it with ``proto`` 0, which accepted sockets inherit, and asyncio only sets
    TCP_NODELAY on sockets that say ``IPPROTO_TCP``: with Nagle left on, every keep-alive
    response waits ~40 ms for the client's delayed ACK (uvicorn issue #3149, ``--workers N``).
    """
    sock = server_config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock
