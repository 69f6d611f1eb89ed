"""The live shop's event endpoints: the shop sends what shoppers do, and asks by shopper id.

- ``POST /events`` (token required, `seqrec.serve.auth`): ``{"events": [{user_id, item_id,
  type, timestamp}]}``, ``type`` one of view, cart, purchase, ``timestamp`` a raw timestamp of
  the bundle's clock or an ISO date or date-time. Events of item ids the service knows (the
  bundle's items and those added since) are stored in one transaction and the answer is sent
  after the commit, so an acknowledged event is durable; the others are listed back in
  ``unknown_ids``, not stored. At most ``max_events`` per batch (413).
- ``GET /users/{user_id}/recommendations?k=12``: what ``POST /recommend`` answers for the
  shopper's stored history; a shopper without events gets the popularity ranking
  (``source = "popularity"``). ``remove_seen`` and ``exclude`` as in ``POST /recommend``.
- ``DELETE /users/{user_id}`` (token required): erases the shopper's events (right to
  erasure) and says how many.

The history a recommendation reads: the shopper's events of ``ServeConfig.event_types`` (all
three by default) with a timestamp in the last ``event_window_days`` (all by default; the
window needs a bundle whose timestamps are days or seconds), oldest first, the most recent
``max_history`` of them. Each event is one history item, whatever its type: the sequence model
reads the sequence of item ids (the last ``max_len``) and was trained on one kind of
interaction (purchases on H&M), so a view and a purchase count the same, as every interaction
did in training; an item viewed twice is in the history twice. To read purchases only, set
``event_types = ["purchase"]``. A two-stage bundle also reads when each event happened: the
events' timestamps are its ``history_times``, asked right after the latest of them (or at the
bundle's default time, whichever is later).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from seqrec.constraints import ConfigError
from seqrec.ranker.events import day_length
from seqrec.serve.auth import require_token
from seqrec.serve.recommender import Recommender, RequestError, request_time
from seqrec.serve.schemas import (
    ERRORS,
    MAX_K,
    EventBatch,
    EventsStored,
    ItemId,
    RecommendRequest,
    RecommendResponse,
    ServeConfig,
    Timestamp,
    UserErased,
)
from seqrec.serve.store import Event, Store

if TYPE_CHECKING:
    from seqrec.serve.app import Served

UserId = Annotated[str, PathParam(min_length=1, max_length=256, description="The shopper's id.")]


def add_shop_routes(app: FastAPI, served: Served, store: Store, config: ServeConfig) -> None:
    """POST /events, GET /users/{user_id}/recommendations and DELETE /users/{user_id}."""
    if config.event_window_days is not None:
        time_unit = served.current.recommender.time_unit
        if day_length(time_unit) is None:
            raise ConfigError(
                f"event_window_days = {config.event_window_days}: this bundle's timestamps "
                f"({time_unit}) only order events, so no window in days can be read"
            )
    authorized = [Depends(require_token(config))]
    add_event_route(app, served, store, config, authorized)
    add_user_routes(app, served, store, config, authorized)


def parse_events(batch: EventBatch, rec: Recommender) -> tuple[list[Event], list[str]]:
    """The events of known items, times in the bundle's units, and the unknown item ids (each
    once, in order); 422 naming an event whose time cannot be read."""
    events: list[Event] = []
    unknown: dict[str, None] = {}  # ordered, each id once
    for i, event in enumerate(batch.events):
        if event.item_id not in rec.index:
            unknown[event.item_id] = None
            continue
        try:
            when = request_time(event.timestamp, rec.time_unit, f"events[{i}].timestamp")
        except RequestError as error:
            raise HTTPException(422, str(error)) from None
        events.append(Event(event.user_id, event.item_id, event.type, when))
    return events, list(unknown)


def add_event_route(
    app: FastAPI, served: Served, store: Store, config: ServeConfig, authorized: list
) -> None:
    @app.post(
        "/events",
        response_model=EventsStored,
        dependencies=authorized,
        responses={code: ERRORS[code] for code in (400, 401, 403, 413)},
    )
    def post_events(batch: EventBatch) -> dict:
        """Store shoppers' events (durably, before answering); unknown item ids are listed."""
        if len(batch.events) > config.max_events:
            raise HTTPException(
                413, f"{len(batch.events)} events in one batch; at most {config.max_events}"
            )
        events, unknown = parse_events(batch, served.current.recommender)
        return {"stored": store.add_events(events), "unknown_ids": unknown}


def window_start(rec: Recommender, config: ServeConfig) -> int | None:
    """The earliest event time a recommendation reads (bundle units), None: no window."""
    per_day = day_length(rec.time_unit)
    if config.event_window_days is None or per_day is None:
        return None
    now = int(time.time() * per_day // 86400)
    return now - int(config.event_window_days * per_day)


def history_request(  # noqa: PLR0913 (a request's parts)
    items: list[str],
    times: list[int],
    rec: Recommender,
    k: int,
    exclude: list[str],
    remove_seen: bool | None,
) -> RecommendRequest:
    """The POST /recommend request of a shopper's stored events (``items`` at ``times``,
    oldest first)."""
    at: int | None = None
    if rec.ranker is not None and times:  # asked after the shopper's latest event
        at = max(rec.default_cutoff, times[-1] + 1)
    history_times: list[Timestamp] = list(times)
    return RecommendRequest(
        history=items,
        history_times=history_times,
        at=at,
        k=k,
        exclude=exclude,
        remove_seen=remove_seen,
    )


def add_user_routes(
    app: FastAPI, served: Served, store: Store, config: ServeConfig, authorized: list
) -> None:
    from seqrec.serve.app import answer  # app.py adds these routes: imported once it is loaded

    types = tuple(config.event_types)

    @app.get(
        "/users/{user_id}/recommendations",
        response_model=RecommendResponse,
        responses={code: ERRORS[code] for code in (400, 413)},
    )
    async def user_recommendations(
        user_id: UserId,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of items.")] = 12,
        exclude: Annotated[list[ItemId] | None, Query(description="Never recommend.")] = None,
        remove_seen: Annotated[bool | None, Query(description="As in /recommend.")] = None,
    ) -> Response:
        """Top-k items after the shopper's stored events (see the module doc for which)."""
        serving = served.current
        rec = serving.recommender
        since = window_start(rec, config)
        read = (user_id, types, since, config.max_history)
        if store.local:  # a local SQLite read (WAL: never waits on writers) costs less inline
            items, times = store.user_history(*read)  # than a hop to a worker thread
        else:  # a database server: the event loop does not wait on the network
            items, times = await run_in_threadpool(store.user_history, *read)
        request = history_request(items, times, rec, k, exclude or [], remove_seen)
        body = await answer(request, serving, config)
        return Response(body, media_type="application/json")

    @app.delete(
        "/users/{user_id}",
        response_model=UserErased,
        dependencies=authorized,
        responses={code: ERRORS[code] for code in (401, 403)},
    )
    def erase_user(user_id: UserId) -> dict:
        """Erase every stored event of the shopper."""
        return {"user_id": user_id, "deleted": store.delete_user(user_id)}
