"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis), against the
live server on 127.0.0.1: every operation, valid and invalid inputs, and never a 5xx — and
every answer fits the document (status codes, content type, body schema).

Schemathesis calls the server with blocking HTTP, so it runs in a worker thread while the
server runs in the test's trio loop. Examples are bounded (:data:`EXAMPLES` per operation and
mode) and derandomised, so the run is short and the same every time.
"""

from __future__ import annotations

from typing import Final

import httpx
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from api_support import FAST_KEY, api_server, hall_with_clients  # noqa: F401
from server_support import guard

EXAMPLES: Final = 15  # examples per operation and generation mode
CHECKS: Final = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz(base: str, doc: dict) -> list[str]:
    """Run every operation of *doc* against *base*; the labels of the operations run."""
    schema = schemathesis.openapi.from_dict(doc)
    ran = []
    with httpx.Client() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case: schemathesis.Case) -> None:
                    headers = {"X-API-Key": FAST_KEY, **(case.headers or {})}
                    response = case.call(base_url=base, headers=headers)
                    case.validate_response(response, checks=CHECKS)

                check()
            ran.append(operation.label)
    return ran


@guard(600)
async def test_fuzzing_every_operation_from_the_openapi_document_finds_no_5xx(api_server):
    base = f"http://127.0.0.1:{api_server.port}/api/v1"
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{base}/openapi.json")).json()
    ran = await trio.to_thread.run_sync(fuzz, base, doc)
    assert len(ran) == sum(len(item) for item in doc["paths"].values()) >= 7
    assert api_server.failure is None
