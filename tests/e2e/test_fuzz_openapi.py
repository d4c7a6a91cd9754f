"""The API reference at /analytics/docs/, and schemathesis fuzzing of the document it serves.

The fuzzing loads the OpenAPI document as Envoy serves it and sends every operation generated
requests through Envoy: once with a valid advanced customer key (over a tenant with a little
ingested data), once without a key. Every operation gets a fuzzing phase of a bounded number of
examples (positive and negative) and, in the keyed run, the coverage phase (deterministic edge
cases, undocumented methods). The runs are deterministic: fixed seed, derandomized Hypothesis,
no shrinking, no example database.

The fuzzing found that HTTP header names gRPC metadata does not allow (`x%y`) failed every
call with 500; the gateway now drops them, and the test at the end of this module keeps it so.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st

from tests.builders import scenario, wire

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCS = "/analytics/docs/"
SWAGGER_ASSETS = ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"]
NOT_AUTHENTICATED = {"type": "not-authenticated", "title": "Not authenticated"}
# the only operations of the document that answer without a key (CONTRACT §2)
PUBLIC_PATHS = {"/ping", "/ping/db", "/analytics/legacy/ping", "/analytics/legacy/ping/db",
                "/status", "/oauth/token"}

SEED = 20_240_917
# Fuzzing-phase examples per operation (~140 operations) besides the coverage phase's
# boundary cases. The anonymous run, which only has to meet 401s, skips the coverage phase
# and fuzzes less. Sized to keep the module near 1.5 minutes of a `make test` under 15.
MAX_EXAMPLES = {"keyed": 10, "anonymous": 4}
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
# Valid values of parameters the document types as free strings, mixed into some generated
# requests so that the fuzzing also reaches answers with rows, not only 400s.
TIMES = ["live", "10m", "1h", "24h", "1w", "1M", "2M", "CM", "LM"]
# (channel, stream) with data in the scenario ingested below (sessions 0 and 2 of 4)
SCOPES = [("ch-1", "ch-1-stream-0"), ("ch three", "ch three-stream-0")]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """One JSON value per line; the document's schema is a string (the NDJSON text itself)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return "\n".join(json.dumps(item) for item in value).encode()
    return json.dumps(value).encode()


def _config(
    headers: dict[str, str], *, max_examples: int, coverage: bool, security_parameters: bool
) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "headers": headers,
        "request-timeout": 30,
        "generation": {
            "max-examples": max_examples,
            "deterministic": True,
            "no-shrink": True,
            "database": "none",
            "with-security-parameters": security_parameters,
        },
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": coverage},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        # only the checks asked for; in particular not `unsupported_method`: an undocumented
        # method falls through to Envoy's catch-all route, which answers the documented 404
        # `{"detail": "Not Found"}` (CONTRACT §9), not a 405 with an Allow header
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })


def _load(stack, headers: dict[str, str], **options):
    schema = schemathesis.openapi.from_url(f"{stack.http_url}{DOCS}openapi.json",
                                           config=_config(headers, **options))
    schema.config.update(base_url=stack.http_url)

    @schema.hook("flatmap_query")
    def _valid_windows(ctx, query):
        names = {parameter.name for parameter in ctx.operation.query}
        valid = {"time": st.sampled_from(TIMES), "source": st.sampled_from(["cdn", "p2p"])}
        optional = {name: values for name, values in valid.items() if name in names}
        if not isinstance(query, dict) or not optional:
            return st.just(query)
        return st.fixed_dictionaries({}, optional=optional).map(lambda v: {**query, **v})

    @schema.hook("flatmap_path_parameters")
    def _known_scopes(ctx, path):
        if not isinstance(path, dict) or "channel_id" not in path:
            return st.just(path)
        names = ["channel_id", "stream_id"] if "stream_id" in path else ["channel_id"]
        known = st.sampled_from(SCOPES).map(
            lambda scope: {**path, **dict(zip(names, scope[:len(names)], strict=True))})
        return st.one_of(st.just(path), known)

    return schema


@pytest.fixture(scope="module")
def advanced_key(api, tenants, frozen_now: datetime) -> str:
    """An advanced customer's key, over a little ingested data."""
    customer_id, key = tenants.customer("advanced")
    beacons = scenario(customer_id, frozen_now, seed=31, sessions=4)
    response = api.ingest(key, [wire(b) for b in beacons])
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(beacons)
    return key


@pytest.fixture(scope="module")
def keyed_schema(stack, advanced_key: str):
    return _load(stack, {"Authorization": f"Bearer {advanced_key}"},
                 max_examples=MAX_EXAMPLES["keyed"], coverage=True, security_parameters=False)


@pytest.fixture(scope="module")
def anonymous_schema(stack):
    # schemathesis generates the bearer credentials itself: absent or random, never valid
    return _load(stack, {}, max_examples=MAX_EXAMPLES["anonymous"], coverage=False,
                 security_parameters=True)


@pytest.fixture(autouse=True)
def _nodeid_compat(request):
    """schemathesis 4.32's lazy schemas read and rewrite `item._nodeid`, which pytest 9.2 no
    longer has (node ids live in `item._id`): give them a plain attribute so that they run.
    Only the names in schemathesis' own reports are affected; pytest's node ids are not."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


keyed = schemathesis.pytest.from_fixture("keyed_schema")
anonymous = schemathesis.pytest.from_fixture("anonymous_schema")


# --- the API reference page ----------------------------------------------------------------


def test_docs_page_is_html(api):
    response = api.get(DOCS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for name in [*SWAGGER_ASSETS, "openapi.json"]:
        assert name in page, name


def test_docs_without_slash_redirects(api):
    response = api.get(DOCS.rstrip("/"))
    assert response.status_code in (301, 302, 307, 308)
    assert httpx.URL(response.headers["location"]).path == DOCS


def test_served_document_has_every_generated_path(api):
    response = api.get(f"{DOCS}openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    generated = json.loads((REPO / "gen" / "openapi.json").read_text())
    missing = sorted(set(generated["paths"]) - set(served["paths"]))
    assert not missing, missing
    for path, operations in generated["paths"].items():
        assert set(operations) <= set(served["paths"][path]), path


@pytest.mark.parametrize("name", SWAGGER_ASSETS)
def test_swagger_ui_assets(api, name):
    response = api.get(DOCS + name)
    assert response.status_code == 200, name
    expected = "text/css" if name.endswith(".css") else "javascript"
    assert expected in response.headers["content-type"]
    assert len(response.content) > 1000


# --- fuzzing ---------------------------------------------------------------------------------


@keyed.parametrize()
def test_fuzz_with_an_advanced_key(case):
    response = case.call_and_validate()
    if case.operation.path == "/oauth/token":
        _token_refused(case, response)
        return
    # the key is sent with every request (config headers): a 401 means it was not
    assert response.status_code != 401, (case.method, case.formatted_path, response.text)


@anonymous.parametrize()
def test_fuzz_without_a_key(case):
    response = case.call_and_validate()
    if case.method.upper() != case.operation.method.upper():
        # the coverage phase's undocumented methods (TRACE, ...), should it be enabled: no route
        # matches them, so Envoy answers 404 before any authentication, as for an unknown path
        return
    if case.operation.path == "/oauth/token":
        _token_refused(case, response)
        return
    if case.operation.path in PUBLIC_PATHS:
        assert response.status_code != 401, (case.operation.label, response.text)
        return
    if response.status_code == 400 and _untranscodable_body(case, response):
        return
    assert response.status_code == 401, (case.method, case.formatted_path, case.query,
                                         response.status_code, response.text)
    assert response.json() == NOT_AUTHENTICATED


def _token_refused(case, response) -> None:
    """The token endpoint authenticates clients, not keys: fuzzed credentials get an RFC 6749
    error (400 or 401 invalid_client), never a key error (other methods: no route, 404)."""
    if case.method.upper() != case.operation.method.upper():
        assert response.status_code == 404, response.text
        return
    assert response.status_code in (400, 401), response.text
    assert "error" in response.json(), response.text


def _untranscodable_body(case, response) -> bool:
    """A body Envoy's gRPC-JSON transcoder cannot turn into the request message is answered 400
    in the §9 body form by Envoy itself, before any service, hence before authentication. That
    includes bodies the document allows, such as an object with an empty key (`{"": 1}`:
    "Proto fields must have a name"). Only operations whose JSON body is a message (`:batch`,
    typed beacons) are transcoded; raw bodies (`/ingest/beacons`) reach the service: 401."""
    content = case.operation.definition.raw.get("requestBody", {}).get("content", {})
    if "$ref" not in content.get("application/json", {}).get("schema", {}):
        return False
    detail = response.json().get("detail")
    return isinstance(detail, list) and [item.get("loc") for item in detail] == [["body"]]


# --- header names gRPC metadata does not allow ------------------------------------------------
# HTTP allows `!#$%&'*+^`|~` in names; the gRPC server refused them (500 before our code ran).
# The gateway drops them: the answer is the same as without that header.


@pytest.mark.parametrize("path", ["/ping", "/summary?time=1h", "/analytics/legacy/stats/os?time=1h",
                                  "/analytics/v1/ingest/beacons"])
def test_header_name_outside_grpc_metadata_is_no_server_error(api, advanced_key, path):
    def call(**headers):
        method = "POST" if "ingest" in path else "GET"
        return api.http.request(method, path, content=b"[]" if method == "POST" else None,
                                headers={**api.auth(advanced_key), **headers})

    plain, odd = call(), call(**{"x%y": "1"})
    assert plain.status_code < 500, plain.text
    assert (odd.status_code, odd.content) == (plain.status_code, plain.content)
