"""Every endpoint fuzzed from the app's own OpenAPI schema (schemathesis strategies under
hypothesis): valid and invalid input, write endpoints with and without the API key. Never a 5xx;
status codes, content types and bodies always as the schema declares them; a write without the key
is always 401."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crossrec.serve.app import create_app
from crossrec.serve.state import ServingState

pytestmark = pytest.mark.slow
KEY = "fuzz-key"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
WRITES = [("POST", "/feedback"), ("PUT", "/items/{item_id}"), ("DELETE", "/items/{item_id}")]
OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/users/{user_id}/recommendations"),
    ("GET", "/users/{user_id}/recommendations/{item_id}/facts"),
    ("GET", "/users/{user_id}/recommendations/{item_id}/explanation"),
    ("GET", "/items/{item_id}"),
    ("GET", "/items/{item_id}/similar"),
    ("POST", "/search/text"),
    ("POST", "/search/media"),
    ("GET", "/users"),
    ("GET", "/items/{item_id}/poster"),
    *WRITES,
]
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Only unconstrained string path parameters: there is no invalid request to generate.
NOTHING_TO_NEGATE = {
    ("GET", "/health"),
    ("GET", "/items/{item_id}"),
    ("GET", "/users/{user_id}/recommendations/{item_id}/facts"),
    ("GET", "/items/{item_id}/poster"),
    ("DELETE", "/items/{item_id}"),
}
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (POSITIVE, NEGATIVE)
    if not (mode is NEGATIVE and (method, path) in NOTHING_TO_NEGATE)
]
# Bounded (2 shared cores) and derandomized: the same cases every run, so a failure reproduces.
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def known(bundle) -> dict[str, list[str]]:
    return {
        "user_id": [str(u) for u in bundle.user_ids[:50]],
        "item_id": [str(i) for i in bundle.item_ids[:50]],
    }


def _bodies(known, method: str, path: str) -> st.SearchStrategy | None:
    """Valid bodies that get past the id and JSON checks (random ones almost never do)."""
    if (method, path) == ("POST", "/feedback"):
        event = st.fixed_dictionaries(
            {
                "user_id": st.sampled_from(known["user_id"]) | st.text(min_size=1, max_size=20),
                "item_id": st.sampled_from(known["item_id"]),
                "kind": st.sampled_from(["click", "rating", "play"]),
                "value": st.floats(-1e6, 1e6),
            }
        )
        return st.fixed_dictionaries({"events": st.lists(event, min_size=1, max_size=5)})
    if (method, path) == ("PUT", "/items/{item_id}"):
        fields = st.dictionaries(
            st.sampled_from(["title", "genres", "tags", "overview", "image", "audio", "other"]),
            st.none() | st.text(max_size=200),
        )
        return fields.map(lambda row: {"metadata": json.dumps(row)})
    return None


def _cases(api, known, method: str, path: str, mode) -> st.SearchStrategy:
    """The operation's cases; valid ones half the time with ids the bundle knows and bodies that pass
    the handlers' own checks (not only 404s and 422s)."""
    operation = api[path][method]
    names = [n for n in known if "{" + n + "}" in path]
    bodies = _bodies(known, method, path)
    if mode is NEGATIVE or (not names and bodies is None):
        return operation.as_strategy(mode)
    ids = {n: st.sampled_from(known[n]) for n in names}
    if method == "PUT":  # a new item (the trained ones cannot be replaced: 422) or a replaced new one
        ids = {
            "item_id": st.sampled_from(known["item_id"]) | st.from_regex(r"new-[a-z0-9]{1,3}", fullmatch=True)
        }
    real = st.fixed_dictionaries(
        {
            "path_parameters": st.fixed_dictionaries(ids),
            **({"body": bodies} if bodies is not None else {}),
        }
    )
    return st.one_of(operation.as_strategy(mode), real.flatmap(lambda kw: operation.as_strategy(mode, **kw)))


# The schema comes from a fixture and is drawn from with `given` (schemathesis's own
# `pytest.from_fixture` fails under pytest 9: it reads `request.node._nodeid`).
@pytest.fixture(scope="module")
def api(bundle):
    app = create_app(ServingState(bundle, exact_below=1000), api_key=KEY)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_in_the_schema_is_fuzzed(api):
    found = {(r.ok().method.upper(), r.ok().path) for r in api.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
@FUZZ
@given(data=st.data())
def test_every_operation_with_the_key(api, known, method, path, mode, data):
    case = data.draw(_cases(api, known, method, path, mode))
    case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)


@pytest.mark.parametrize(("method", "path", "mode"), [c for c in CASES if tuple(c.values[:2]) in WRITES])
@FUZZ
@given(data=st.data())
def test_writes_without_the_key_are_401(api, known, method, path, mode, data):
    case = data.draw(_cases(api, known, method, path, mode))
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
    response = case.call()
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 401, (response.status_code, response.text)
