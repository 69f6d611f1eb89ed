"""The live catalogue's endpoints (token required, `seqrec.serve.auth`):

- ``POST /items`` (multipart): an ``item`` field holding a JSON object of the item file's
  columns (``item_id`` required; the text, category and numeric columns the bundle was trained
  with, each optional; ``title`` and ``price`` for display) and an optional ``image`` file. The
  item is encoded with the bundle's own encoders and served before the answer is sent
  (`seqrec.serve.live_catalogue.LiveCatalogue.add`), and stored: a restart or a reload re-adds
  it. 409 for an id the service knows, 422 for a missing id, a field that is not a scalar or
  an image that cannot be decoded; nothing is added then.
- ``PATCH /items/{item_id}``: ``{"available": false}`` takes the item out of every answer (sold
  out), ``true`` puts it back; stored. The catalogue still lists it (``available`` in its
  detail).
- ``POST /admin/reload``: ``{"bundle": PATH}`` (default: the bundle served now) is loaded beside
  the served one and swapped in with the stored items (`seqrec.serve.live_catalogue`); the
  old one keeps serving meanwhile and when the new one cannot be loaded (422).
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi import Path as PathParam
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from seqrec.config import ConfigError
from seqrec.data.dataset import DataError
from seqrec.serve.auth import require_token
from seqrec.serve.live_catalogue import ItemConflict, LiveCatalogue, NewItem, save_image
from seqrec.serve.schemas import (
    ERRORS,
    Availability,
    Invalid,
    ItemAdded,
    Problem,
    Reloaded,
    ReloadRequest,
    ServeConfig,
)

MAX_ID = 256
ItemPath = Annotated[str, PathParam(min_length=1, max_length=MAX_ID)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": Problem},
    422: {"model": Invalid},
}


def item_fields(text: str) -> dict[str, Any]:
    """The ``item`` form field: a JSON object of scalars with a string ``item_id`` (422 else)."""
    try:
        fields = json.loads(text, parse_constant=lambda name: float("nan"))
    except ValueError as error:
        raise HTTPException(422, f"item is not valid JSON: {error}") from None
    if not isinstance(fields, dict):
        raise HTTPException(422, "item must be a JSON object of the item file's columns")
    item_id = fields.get("item_id")
    if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > MAX_ID:
        raise HTTPException(422, f"item needs an item_id: a string of 1 to {MAX_ID} characters")
    for key, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise HTTPException(422, f"item field {key!r} is not a finite number")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise HTTPException(422, f"item field {key!r} must be a string, number or null")
    return fields


def image_suffix(data: bytes, name: str | None) -> str:
    """The file suffix of an uploaded image (from its decoded format); 422 when ``data`` is
    not an image PIL can decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes it all: a truncated file fails here
            kind = (image.format or "").lower()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise HTTPException(
            422, f"image {name or ''!r} is not a readable image file: {error}"
        ) from None
    return ".jpg" if kind == "jpeg" else f".{kind or 'img'}"


def add_catalogue_routes(app: FastAPI, catalogue: LiveCatalogue, config: ServeConfig) -> None:
    """POST /items, PATCH /items/{item_id} and POST /admin/reload (token required)."""
    authorized = [Depends(require_token(config))]
    add_item_route(app, catalogue, authorized)
    add_availability_route(app, catalogue, authorized)
    add_reload_route(app, catalogue, authorized)


def add_item_route(app: FastAPI, catalogue: LiveCatalogue, authorized: list) -> None:
    @app.post(
        "/items",
        response_model=ItemAdded,
        status_code=201,
        dependencies=authorized,
        responses=RESPONSES,
    )
    async def add_item(
        item: Annotated[
            str, Form(min_length=2, description="JSON object of the item file's columns.")
        ],
        image: Annotated[UploadFile | None, File(description="The item's image.")] = None,
    ) -> dict:
        """Add an item: encoded with the bundle's encoders and recommendable on return."""
        start = time.perf_counter()
        fields = item_fields(item)
        data = await image.read() if image is not None else None
        data = data or None  # an empty upload: no image
        suffix = image_suffix(data, image.filename if image else None) if data else None
        path = save_image(catalogue.image_folder(), data, suffix)
        new = NewItem(fields["item_id"], fields, path)
        try:
            rec = await run_in_threadpool(catalogue.add, new, data, suffix)
        except (ItemConflict, DataError, ConfigError, ValueError) as error:
            if path is not None:
                os.remove(path)
            raise HTTPException(
                409 if isinstance(error, ItemConflict) else 422, str(error)
            ) from None
        seconds = time.perf_counter() - start
        return {"item_id": new.item_id, "n_items": rec.n_items, "seconds": seconds}


def add_availability_route(app: FastAPI, catalogue: LiveCatalogue, authorized: list) -> None:
    @app.patch(
        "/items/{item_id}",
        response_model=Availability,
        dependencies=authorized,
        responses=RESPONSES,
    )
    async def set_availability(item_id: ItemPath, body: Availability) -> dict:
        """Take an item out of every answer (sold out) or put it back."""
        known = await run_in_threadpool(catalogue.set_available, item_id, body.available)
        if not known:
            raise HTTPException(404, f"unknown item id {item_id!r}")
        return {"available": body.available}


def add_reload_route(app: FastAPI, catalogue: LiveCatalogue, authorized: list) -> None:
    @app.post(
        "/admin/reload",
        response_model=Reloaded,
        dependencies=authorized,
        responses=RESPONSES,
    )
    async def reload(body: ReloadRequest | None = None) -> dict:
        """Serve a bundle (default: the one served, re-read) with the items added since."""
        start = time.perf_counter()
        path = catalogue.root.path if body is None or body.bundle is None else body.bundle
        try:
            rec = await run_in_threadpool(catalogue.reload, path)
        except (DataError, ConfigError, OSError) as error:
            raise HTTPException(422, f"bundle {str(path)!r} not loaded: {error}") from None
        return {
            "bundle": str(rec.bundle.path),
            "n_items": rec.n_items,
            "runtime": rec.runtime,
            "seconds": time.perf_counter() - start,
        }
