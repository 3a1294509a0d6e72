"""schemathesis against /v1/openapi.json on a real daphne: no 5xx, no response that breaks the document.

Every documented operation is fuzzed with schema-valid and schema-invalid requests. A real worker
process (the worker program's scripted engine: instant, fixed text) serves every catalog model, so
chat completions that pass validation run end to end instead of answering 503 "no worker".

schemathesis's own pytest loader (`schemathesis.pytest.from_fixture`) does not run under pytest 9.2
(it sets a removed `Node._nodeid`), so operations are driven through its Hypothesis strategies.
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from inference.catalog import SEED
from ratelimits.services import account_limits_set
from tests.support.factories import account_create
from tests.support.workers import catalog, operator, workers  # noqa: F401 - fixtures

# Three Responses API operations joined chat's: past pytest's default 300 s on a loaded 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Bounded: a few hundred requests in all, about a minute on the 2-core test machine.
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}


@pytest.fixture
def fuzz_target(live_platform, workers, sogni_rate):  # noqa: F811 - the imported fixture
    # With a SOGNI rate, as a platform in operation has: paying in SOGNI is then a 402, not a 503.
    account = account_create(email="fuzz@example.com")
    # Hundreds of requests a minute: lift this account's limits (the limits have tests of their own).
    account_limits_set(user=account.user, requests_per_minute=0, tokens_per_minute=0)
    workers.start(
        "fuzz-scripted",
        engine="scripted",
        models=[row["id"] for row in SEED],
        slots=4,
        extra=["--scripted-rate", "0", "--scripted-tokens", "4"],
    )
    return live_platform.url, account.key


def test_document_is_public_and_describes_the_api(live_platform):
    response = httpx.get(f"{live_platform.url}/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"/v1/models", "/v1/models/{model_id}", "/v1/chat/completions"} <= paths.keys()
    assert paths["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ListModelsResponse"
    }
    chat = paths["/v1/chat/completions"]["post"]
    assert {"200", "400", "401", "429", "503"} <= chat["responses"].keys()
    assert document["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"


def test_api_conforms_to_its_document(fuzz_target):
    url, key = fuzz_target
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
    schema.config.update(base_url=url, headers={"Authorization": f"Bearer {key}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"GET /v1/models", "GET /v1/models/{model_id}", "POST /v1/chat/completions"} <= labels

    failures, fuzzed, statuses = [], set(), {}
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case):
                response = case.call_and_validate(checks=CHECKS, timeout=30)
                statuses.setdefault(case.operation.label, set()).add(response.status_code)

            try:
                fuzz()
                fuzzed.add((operation.label, mode))
            except Unsatisfiable:
                continue  # nothing in the operation can be invalid (e.g. only a free-form header)
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert ("POST /v1/chat/completions", GenerationMode.NEGATIVE) in fuzzed
    assert {(label, GenerationMode.POSITIVE) for label in labels} <= fuzzed
    # Requests reached the worker and came back, and bad ones were refused.
    assert 200 in statuses["POST /v1/chat/completions"], statuses
    assert 400 in statuses["POST /v1/chat/completions"], statuses
