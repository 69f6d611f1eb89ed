"""FastAPI app serving a bundle: recommendations, the catalogue, item images and a demo page.

Endpoints (schema at ``/openapi.json``, docs at ``/docs``):

- ``POST /recommend``: ``{history, k, exclude, remove_seen}`` -> ranked items with scores. Item
  ids the bundle does not know are ignored and listed back in ``unknown_ids``; a history with
  no known item gets the popularity ranking (``source = "popularity"``). The model reads the
  last ``max_len`` known items, exactly as in evaluation.
- ``GET /items`` (catalogue page, best-sellers first, optional search), ``GET /items/{id}``,
  ``GET /items/{id}/image``, ``GET /health``, and ``GET /`` (the demo shop page).
- The live shop, its writes behind a bearer token (`seqrec.serve.auth`), its data in a
  database (`seqrec.serve.store`): ``POST /events``, ``GET /users/{id}/recommendations`` and
  ``DELETE /users/{id}`` (`seqrec.serve.shop_routes`); ``POST /items`` (a new product,
  recommendable on return), ``PATCH /items/{id}`` (sold out or back) and ``POST /admin/reload``
  (another bundle swapped in; SIGHUP too) (`seqrec.serve.catalogue_routes`, the catalogue in
  `seqrec.serve.live_catalogue`). What a request is answered with is ``served.current``,
  replaced as a whole on every change: a request never sees half of one.

Rankings are those ``seqrec eval`` ranks (`seqrec.serve.recommender`), and concurrent requests
are ranked together: `MicroBatcher` (`seqrec.serve.batching`) hands the requests queued while
a batch was ranked to the model as one [B, max_len] batch, in a worker thread (one process)
or in the event loop (each of several processes, `seqrec.serve.schemas.ranks_in_thread`).
(Batches of different sizes may round a score differently in the last bit, as evaluation's
own batches of 256 do; ONNX Runtime, in the last few digits.)

Bad requests are 4xx with a ``detail`` message: 404 unknown item, 413 body larger than
``max_body_bytes`` (``max_upload_bytes`` for ``POST /items``, ``max_events_bytes`` for
``POST /events``) or a history / exclude list over
its cap, 422 malformed JSON or values (a non-finite number, which JSON has not but Python's
`json` reads, included: `seqrec.serve.strict_json`). No request is answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqrec.bundle import Bundle, load_bundle
from seqrec.constraints import check_config
from seqrec.serve.catalogue_routes import add_catalogue_routes
from seqrec.serve.live_catalogue import LiveCatalogue, Served, Serving, reload_served
from seqrec.serve.page import PAGE_HTML
from seqrec.serve.recommender import Recommender, RequestError
from seqrec.serve.schemas import (
    ERRORS,
    Health,
    ItemDetail,
    ItemPage,
    RecommendRequest,
    RecommendResponse,
    ServeConfig,
)
from seqrec.serve.shop_routes import add_shop_routes
from seqrec.serve.store import Store
from seqrec.serve.strict_json import StrictJSONRoute, http_error, validation_failed

__all__ = ["BodySizeLimit", "ServeConfig", "Served", "Serving", "create_app", "reload_served"]
logger = logging.getLogger(__name__)


def create_app(
    bundle: str | Path | Bundle, config: ServeConfig | None = None, store: Store | None = None
) -> FastAPI:
    """The FastAPI app serving ``bundle`` (a folder from ``seqrec train`` or a loaded Bundle),
    with the live shop's events and items in ``store`` (default: `Store.url_for` the bundle and
    ``config.db``)."""
    config = config or ServeConfig()
    check_config(config)
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    store = store or Store(Store.url_for(loaded.path, config.db))
    catalogue = LiveCatalogue(loaded, store, config)
    served = catalogue.served

    app = FastAPI(
        title="seqrec",
        summary=f"Sequential recommendations from the bundle {loaded.path.name}",
        description=(__doc__ or "").split("\n\n")[0],
        lifespan=lifespan,
    )
    add_error_handling(app, config)
    app.state.served = served
    app.state.config = config
    app.state.store = store
    app.state.catalogue = catalogue
    add_recommend_route(app, served, config)
    add_item_routes(app, served)
    add_service_routes(app, catalogue)
    add_shop_routes(app, served, store, config)
    add_catalogue_routes(app, catalogue, config)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """SIGHUP reloads the bundle (`reload_served`) where the server runs in the main thread;
    the catalogue's background work stops with the server."""
    loop = asyncio.get_running_loop()

    def on_hangup() -> None:
        future = loop.run_in_executor(None, reload_served, app)
        future.add_done_callback(log_reload)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):  # not main thread
        pass
    yield
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        loop.remove_signal_handler(signal.SIGHUP)
    app.state.catalogue.close()


def log_reload(future: asyncio.Future[Recommender]) -> None:
    error = future.exception()
    if error is not None:
        logger.error("SIGHUP reload failed; the served bundle is unchanged: %s", error)
    else:
        logger.info("SIGHUP: serving %s", future.result().bundle.path)


# --- middleware and error handlers -------------------------------------------------------------


class BodySizeLimit:
    """ASGI middleware: 413 with a JSON ``detail`` for request bodies over ``max_bytes``, or
    over the limit ``routes`` gives their ``(method, path)`` (``POST /items`` carries an image,
    ``POST /events`` a batch).

    Refused up front when Content-Length says so, else counted while the body streams in.
    (Starlette's own limit answers in plain text; this keeps every error ``{"detail": ...}``.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int, routes: dict[tuple[str, str], int]):
        self.app, self.max_bytes, self.routes = app, max_bytes, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.routes.get((scope["method"], scope["path"]), self.max_bytes)
        message = f"request body over {limit} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await JSONResponse({"detail": message}, 413)(scope, receive, send)
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            received_message = await receive()
            if received_message["type"] == "http.request":
                received += len(received_message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, message)
            return received_message

        return await self.app(scope, counted_receive, send)


def add_error_handling(app: FastAPI, config: ServeConfig) -> None:
    """Strict JSON bodies (NaN or Infinity: 422), every error answered as JSON, and the body
    size limits (413)."""
    app.router.route_class = StrictJSONRoute
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=config.max_body_bytes,
        routes={
            ("POST", "/items"): config.max_upload_bytes,
            ("POST", "/events"): config.max_events_bytes,
        },
    )


# --- routes --------------------------------------------------------------------------------------


def check_caps(request: RecommendRequest, config: ServeConfig) -> None:
    """413 when the history or the exclude list is longer than the service takes."""
    if len(request.history) > config.max_history:
        raise HTTPException(
            413, f"history has {len(request.history)} items; at most {config.max_history}"
        )
    if len(request.exclude) > config.max_exclude:
        raise HTTPException(
            413, f"exclude has {len(request.exclude)} items; at most {config.max_exclude}"
        )


async def answer(request: RecommendRequest, serving: Serving, config: ServeConfig) -> bytes:
    """The JSON body answering ``request`` (of the RecommendResponse shape); 413 over a cap."""
    check_caps(request, config)
    rec = serving.recommender
    try:
        query, unknown = rec.query(request)
    except RequestError as error:  # a time a two-stage bundle cannot read
        raise HTTPException(400, str(error)) from None
    ranking = await serving.batcher.submit(query)
    items = [
        {**rec.records[idx], "score": score}
        for idx, score in zip(ranking.items.tolist(), ranking.scores.tolist(), strict=True)
    ]
    body = {
        "items": items,
        "source": ranking.source,
        "unknown_ids": unknown,
        "history_used": rec.history_used(len(query.history)),
    }
    return json.dumps(body).encode()


def add_recommend_route(app: FastAPI, served: Served, config: ServeConfig) -> None:
    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={400: ERRORS[400], 413: ERRORS[413]},
    )
    async def recommend(request: RecommendRequest) -> Response:
        """Top-k items after a browsing history (most recent last)."""
        # already of the RecommendResponse shape: sent as is, without FastAPI's re-validation
        body = await answer(request, served.current, config)
        return Response(body, media_type="application/json")


def add_item_routes(app: FastAPI, served: Served) -> None:
    def known(item_id: str) -> int:
        idx = served.current.recommender.index.get(item_id)
        if idx is None:
            raise HTTPException(404, f"unknown item id {item_id!r}")
        return idx

    @app.get("/items", response_model=ItemPage)
    def list_items(
        q: Annotated[str | None, Query(max_length=200, description="Search text.")] = None,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 36,
    ) -> dict:
        """A page of the catalogue, best-sellers first; ``q`` keeps items whose text has it."""
        rec = served.current.recommender
        order = rec.catalogue(q)
        page = order[offset : offset + limit]
        return {"total": len(order), "offset": offset, "items": [rec.records[i] for i in page]}

    @app.get("/items/{item_id}", response_model=ItemDetail, responses={404: ERRORS[404]})
    def get_item(item_id: str) -> dict:
        """One item: display fields, text columns and training popularity."""
        return served.current.recommender.detail(known(item_id))

    @app.get(
        "/items/{item_id}/image",
        response_class=FileResponse,
        responses={200: {"content": {"image/*": {}}}, 404: ERRORS[404]},
    )
    def get_image(item_id: str) -> FileResponse:
        """The item's image file."""
        path = served.current.recommender.image_path(known(item_id))
        if path is None or not os.path.isfile(path):
            raise HTTPException(404, f"item {item_id!r} has no image")
        return FileResponse(path)


def add_service_routes(app: FastAPI, catalogue: LiveCatalogue) -> None:
    @app.get("/health", response_model=Health)
    def health() -> dict:
        """Liveness and what is served."""
        serving = catalogue.served.current
        rec, batcher = serving.recommender, serving.batcher
        return {
            "status": "ok",
            "dataset": str(rec.bundle.manifest.get("dataset", "")),
            "model": rec.bundle.config.model.model,
            "n_items": rec.n_items,
            "max_len": rec.max_len,
            "runtime": rec.runtime,
            "retrieval": "exact" if rec.candidates is None else "index",
            "trees": rec.trees,
            "requests_scored": batcher.queries,
            "batches": batcher.batches,
            "ranking_cpu_s": batcher.rank_cpu_s,
            "changes": catalogue.generation,
            "time_unit": rec.time_unit,
            "worker": os.getpid(),
            "ranking_in": "thread" if batcher.in_thread else "event loop",
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML)
