"""Schemathesis fuzzing of the service's OpenAPI schema: no request may cause a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from seqrec.bundle import load_bundle
from seqrec.serve import ServeConfig, create_app


@pytest.fixture(scope="module")
def api_schema(bundle_path):
    app = create_app(load_bundle(bundle_path), ServeConfig(max_history=60, max_body_bytes=8192))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples every run
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.slow
def test_api_has_no_server_errors(case):
    case.call_and_validate()
