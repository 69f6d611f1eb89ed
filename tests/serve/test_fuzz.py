"""Schemathesis fuzzing of the service's OpenAPI schema: no request may cause a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from seqrec.bundle import load_bundle
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.store import Store

TOKEN = "fuzz-token"
NOT_DESCRIBED = {"POST /items", "POST /admin/reload"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # the write endpoints are fuzzed past their lock


@pytest.fixture(scope="module")
def api_schema(bundle_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_serve")
    (folder / "token").write_text(TOKEN)
    config = ServeConfig(max_history=60, max_body_bytes=8192, token_file=str(folder / "token"))
    store = Store(f"sqlite:///{folder / 'shop.db'}")  # a fresh shop, beside no bundle
    app = create_app(load_bundle(bundle_path), config, store=store)
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
    # what the schema cannot describe is refused there (422, naming why), rightly: POST /items
    # takes its item as a JSON object inside a form field, /admin/reload a path to a bundle
    excluded = [positive_data_acceptance] if case.operation.label in NOT_DESCRIBED else []
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)
