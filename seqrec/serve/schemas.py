"""What the service takes and gives: its options (`ServeConfig`) and the request and response
models of its endpoints (pydantic; FastAPI validates requests with them and documents them in
the OpenAPI schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from seqrec.constraints import at_least, choice, positive
from seqrec.serve.retrieval import RETRIEVALS
from seqrec.serve.scoring import RUNTIMES
from seqrec.serve.store import EVENT_TYPES

MAX_K = 100


@dataclass
class ServeConfig:
    """Request limits and batching of the service (checked by `seqrec.constraints.check_config`
    when the app is created)."""

    # longer request histories are refused (413); the model reads the last max_len
    max_history: int = at_least(0, 1000)
    max_exclude: int = at_least(0, 1000)  # longer exclude lists are refused (413)
    max_body_bytes: int = at_least(1, 64 * 1024)  # larger request bodies are refused (413)
    max_batch: int = at_least(1, 64)  # most requests scored together
    # extra wait to gather a batch; 0: batch what queued meanwhile
    batch_wait_ms: float = at_least(0, 0.0)
    warmup: bool = True  # score one history at start-up so the first request is not slow
    # rank in a worker thread beside the event loop (true) or in the event loop, blocking it
    # (false); None: a thread when the server runs one worker process, the event loop when
    # several share the cores (`ranks_in_thread`; benchmarks/results/ranker_serve_load.md)
    thread: bool | None = None
    runtime: str = choice("auto", *RUNTIMES)  # what computes the scores (seqrec.serve.scoring)
    # a two-stage bundle's trees compiled to native code when a C compiler is found (the same
    # scores as LightGBM's, seqrec.ranker.compiled); false: LightGBM walks them
    compile_trees: bool = True
    # a sequence model's catalogue ranked over every item ("exact") or over the candidates of
    # an index ("index"; "auto": from INDEX_MIN_ITEMS items), seqrec.serve.retrieval
    retrieval: str = choice("auto", *RETRIEVALS)
    retrieval_candidates: int = at_least(1, 200)  # items taken from the index per history
    retrieval_nprobe: int = at_least(1, 64)  # inverted lists of the index scanned per history
    # the live shop (seqrec.serve.shop_routes): the event database, a file path or any
    # SQLAlchemy URL (default: <bundle name>.events.db next to the bundle, seqrec.serve.store)
    db: str | None = None
    token_file: str | None = None  # the write endpoints' token (else $SEQREC_SERVE_TOKEN)
    # recommendations by shopper read the events of the last this many days (None: all) ...
    event_window_days: float | None = positive(None)
    # ... of these types; each is one history item, as every interaction was in training
    event_types: list[str] = field(
        default_factory=lambda: list(EVENT_TYPES),
        metadata={"choices": EVENT_TYPES, "min_items": 1},
    )
    # seconds between looks at the database for items other servers added or took out of
    # sale (several workers, or servers sharing one database); 0: never
    sync_seconds: float = at_least(0, 2.0)
    max_events: int = at_least(1, 1000)  # larger POST /events batches are refused (413)
    # POST /events bodies over this are refused (413): room for max_events of the longest ids
    max_events_bytes: int = at_least(1, 1024 * 1024)
    # POST /items bodies (the item's fields and its image) over this are refused (413)
    max_upload_bytes: int = at_least(1, 10 * 1024 * 1024)


ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# a moment: an ISO date or date-time, or a raw timestamp of the data's clock (days or seconds
# since 1970-01-01, or a position for order-only data); bounded so that it fits int64 sums


def _integral(value: Any) -> Any:
    """12.0 is an integer in JSON Schema: accept it where strict mode would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Timestamp = Annotated[
    Annotated[str, StringConstraints(min_length=1, max_length=64)]
    | Annotated[int, Field(ge=-(10**15), le=10**15)],
    BeforeValidator(_integral),
]


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
    at: Timestamp | None = Field(
        None,
        description="Two-stage bundles: when the shopper asks (an ISO date or date-time, or a "
        "raw timestamp); only events before it are read. Default: right after the bundle's "
        "log ends. Ignored by a bundle of the sequence model alone.",
    )
    history_times: list[Timestamp] | None = Field(
        None,
        description="Two-stage bundles: when each history item was bought (one per history "
        "id, before `at`). Default: right before `at`.",
    )


class Recommendation(BaseModel):
    item_id: str
    score: float
    title: str
    price: float | None
    image_url: str | None


class RecommendResponse(BaseModel):
    items: list[Recommendation]
    source: Literal["model", "ranker", "popularity"] = Field(
        description="model: ranked from the history by the sequence model; ranker: by a "
        "two-stage bundle's ranker; popularity: no known history item."
    )
    unknown_ids: list[str] = Field(description="History ids the bundle does not know (ignored).")
    history_used: int = Field(
        description="Known history items the ranking read (the model reads <= max_len)."
    )


class ItemSummary(BaseModel):
    item_id: str
    title: str
    price: float | None
    image_url: str | None


class ItemDetail(ItemSummary):
    popularity: float = Field(description="Training interactions of the item.")
    text: dict[str, str | None] = Field(description="The item's text columns.")
    available: bool = Field(
        True, description="False when the item is out of sale (never recommended)."
    )


class ItemPage(BaseModel):
    total: int = Field(description="Items matching the search.")
    offset: int
    items: list[ItemSummary]


def ranks_in_thread(config: ServeConfig, workers: int = 1) -> bool:
    """Whether a server of ``workers`` processes ranks in a worker thread: as ``config.thread``
    says, else (None) with one process only. One process gains from scoring in a thread while
    its event loop reads the next requests on the other core; several processes already keep
    the cores busy, and a thread beside each event loop only contends with it for the GIL."""
    return config.thread if config.thread is not None else workers == 1


class Health(BaseModel):
    status: Literal["ok"]
    dataset: str
    model: str
    n_items: int
    max_len: int
    runtime: Literal["onnx", "torchscript", "eager"] = Field(
        description="What computes the scores (seqrec.serve.scoring)."
    )
    retrieval: Literal["exact", "index"] = Field(
        description="Every item scored, or the candidates of an index (seqrec.serve.retrieval)."
    )
    trees: Literal["compiled", "lightgbm"] | None = Field(
        description="What walks a two-stage bundle's trees (seqrec.ranker.compiled); null "
        "without a ranker."
    )
    requests_scored: int
    batches: int
    ranking_cpu_s: float = Field(description="CPU seconds spent scoring and ranking.")
    changes: int = Field(description="Items added and model reloads since the service started.")
    time_unit: str = Field(
        description="The bundle's clock: days or seconds (ISO times accepted) or order only "
        "(integer timestamps)."
    )
    worker: int = Field(description="Process id of the worker that answered (`--workers N`).")
    ranking_in: Literal["thread", "event loop"] = Field(
        description="Where requests are ranked: a worker thread beside the event loop, or the "
        "event loop itself (the `thread` setting)."
    )


class ShopEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: ItemId = Field(description="The shopper's id (the shop's own).")
    item_id: ItemId
    type: Literal["view", "cart", "purchase"]
    timestamp: Timestamp = Field(
        description="When: an ISO date or date-time, or a raw timestamp of the bundle's clock."
    )


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[ShopEvent] = Field(
        description=f"At most {ServeConfig.max_events} events by default, else 413."
    )


class EventsStored(BaseModel):
    stored: int = Field(description="Events stored (durably, before this answer was sent).")
    unknown_ids: list[str] = Field(description="Item ids the service does not know (not stored).")


class UserErased(BaseModel):
    user_id: str
    deleted: int = Field(description="Events erased.")


class Problem(BaseModel):
    detail: str


class Invalid(BaseModel):
    """A 422: a message, or the request validation's list of errors."""

    detail: str | list[dict[str, Any]]


# the error answers the routes document in the OpenAPI schema
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 413)
}


# --- the live catalogue (seqrec.serve.catalogue_routes) ------------------------------------------


class ItemAdded(BaseModel):
    item_id: str
    n_items: int = Field(description="Items served, this one included.")
    seconds: float = Field(description="Time spent encoding the item and swapping it in.")


class Availability(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    available: bool = Field(description="False: sold out, never recommended; true: on sale.")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    bundle: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None, description="The bundle folder to serve; default: the one served now."
    )


class Reloaded(BaseModel):
    bundle: str
    n_items: int
    runtime: str
    seconds: float
