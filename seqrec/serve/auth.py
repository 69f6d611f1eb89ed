"""Bearer-token access to the service's write and admin endpoints.

The token is the content of ``ServeConfig.token_file`` (surrounding whitespace stripped) or,
without one, the environment variable ``SEQREC_SERVE_TOKEN``. A write endpoint answers 401
unless the request says ``Authorization: Bearer <token>`` (compared in constant time), and 403
when the service has no token at all: writes are never open by default. Reads stay open.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from seqrec.constraints import ConfigError
from seqrec.serve.schemas import ServeConfig

ENV_TOKEN = "SEQREC_SERVE_TOKEN"
NO_TOKEN = (
    "this service takes no writes: start it with --token-file PATH (a file holding the token) "
    f"or the environment variable {ENV_TOKEN}"
)

bearer = HTTPBearer(auto_error=False, description="The service's token (seqrec serve --token-file)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def read_token(config: ServeConfig) -> str | None:
    """The service's token: ``config.token_file``'s content, else ``$SEQREC_SERVE_TOKEN``;
    None when neither is set. ConfigError for a token file that is missing or empty."""
    if config.token_file is not None:
        path = Path(config.token_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"token file {path} does not exist")
        token = path.read_text(encoding="utf-8", errors="replace").strip()
        if not token:
            raise ConfigError(f"token file {path} is empty")
        return token
    return os.environ.get(ENV_TOKEN, "").strip() or None


def require_token(config: ServeConfig) -> Callable[[Credentials], Awaitable[None]]:
    """A FastAPI dependency admitting only requests bearing the service's token (read once,
    now): 401 without it or with another, 403 when the service has none."""
    token = read_token(config)
    expected = None if token is None else token.encode()

    async def authorized(credentials: Credentials) -> None:
        if expected is None:
            raise HTTPException(403, NO_TOKEN)
        given = b"" if credentials is None else credentials.credentials.encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                401,
                "missing or wrong token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return authorized
