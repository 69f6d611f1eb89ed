"""Strict JSON for the service: request bodies with non-finite numbers are refused (422), and
every error body can be sent as JSON.

Python's `json` reads the literals ``NaN``, ``Infinity`` and ``-Infinity`` (and ``1e999`` as
infinity), none of which JSON has: a request carrying one would reach validation with a float
that the error body echoes and cannot encode. `loads_strict` parses a body refusing them, naming
where the first one is; `StrictJSONRoute` makes every FastAPI route parse its JSON body with it,
so such a body is answered 422 naming where the number is.

Error bodies echo what the request sent, which UTF-8 JSON cannot always carry: a ``\\ud800``
escape in a body is a lone surrogate (pydantic refuses it, and its error echoes it), a body of
another content type reaches validation as bytes that need not be UTF-8. `http_error` and
`validation_failed` answer as FastAPI's own handlers do, in an `ErrorResponse` (ASCII JSON, so
any string is carried as escapes), with bytes decoded leniently and non-finite floats named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

NON_FINITE_MESSAGE = (
    "non-finite numbers (NaN, Infinity, -Infinity, or beyond the float range) are not accepted"
)


class NonFinite:
    """Stands for a non-finite number while a body is parsed."""

    __slots__ = ("literal",)

    def __init__(self, literal: str):
        self.literal = literal


class NonFiniteNumber(ValueError):
    """A JSON body holds a non-finite number; ``loc`` is where the first one is."""

    def __init__(self, literal: str, loc: tuple):
        self.literal, self.loc = literal, loc
        where = ".".join(map(str, loc)) or "the body"
        super().__init__(f"{where}: {NON_FINITE_MESSAGE} (got {literal})")

    def error(self) -> dict:
        """The refusal in the shape of FastAPI's validation errors."""
        loc = ["body", *self.loc]
        return {
            "type": "non_finite_number",
            "loc": loc,
            "msg": NON_FINITE_MESSAGE,
            "input": self.literal,
        }


def loads_strict(body: bytes | str):
    """``json.loads(body)``, raising `NonFiniteNumber` where the body has a number no float
    holds (``NaN``, ``Infinity``, ``-Infinity``, ``1e999``); other errors as `json.loads`."""
    seen: list[str] = []

    def constant(literal: str) -> NonFinite:
        seen.append(literal)
        return NonFinite(literal)

    def number(text: str) -> float | NonFinite:
        value = float(text)
        return value if math.isfinite(value) else constant(text)

    value = json.loads(body, parse_constant=constant, parse_float=number)
    if seen:
        raise NonFiniteNumber(*first_non_finite(value, seen[0]))
    return value


def first_non_finite(value, literal: str) -> tuple[str, tuple]:
    """The literal and path of the first `NonFinite` in ``value``; ``(literal, ())`` when none
    is left (a repeated key replaced it)."""
    stack: list[tuple[Any, tuple]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, NonFinite):
            return node.literal, path
        if isinstance(node, dict):
            stack.extend((child, (*path, key)) for key, child in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((child, (*path, i)) for i, child in reversed(list(enumerate(node))))
    return literal, ()


class StrictJSONRequest(Request):
    """A request whose ``json()`` is `loads_strict`: a non-finite number is a 422 naming it."""

    async def json(self):
        if not hasattr(self, "_json"):
            try:
                self._json = loads_strict(await self.body())
            except NonFiniteNumber as refused:
                # an HTTPException: FastAPI re-raises it (other errors while parsing are 400)
                raise HTTPException(422, [refused.error()]) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route reading its JSON body with `loads_strict` (``app.router.route_class``)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict_handler(request: Request):
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


class ErrorResponse(JSONResponse):
    """A JSON response written in ASCII: lone surrogates are sent as escapes, not refused."""

    def render(self, content) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTPException (404, 405, 413, ...), in an `ErrorResponse`."""
    if not isinstance(exc, StarletteHTTPException):  # registered for HTTPException only
        raise exc
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # every method of the path, not only its first route's
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    return ErrorResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods of the routes whose path matches the request's (Starlette's 405 names only
    the first such route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)


def _encodable_float(value: float) -> float | str:
    return value if math.isfinite(value) else json.dumps(value)  # NaN, Infinity, -Infinity


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


async def validation_failed(request: Request, exc: Exception) -> ErrorResponse:
    """FastAPI's 422 answer, in an `ErrorResponse`, with bytes as text (undecodable ones
    replaced) and non-finite floats as their JSON literal names."""
    if not isinstance(exc, RequestValidationError):  # registered for RequestValidationError only
        raise exc
    encoders: dict[Any, Callable[[Any], Any]] = {bytes: _text, float: _encodable_float}
    return ErrorResponse({"detail": jsonable_encoder(exc.errors(), custom_encoder=encoders)}, 422)
