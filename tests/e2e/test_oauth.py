"""OAuth 2.0 client credentials (RFC 6749 §4.4, §5; CONTRACT §8) through Envoy: tokens from a
form body or HTTP Basic, RFC error bodies, and tokens accepted like keys for the user's own
usage statistics only."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote_plus, urlencode

import httpx
import psycopg
import pytest

from edgestats_core.tenancy import oauth
from tests.e2e.test_usage_ingest import NOT_AUTHENTICATED, UsageAccounts, event, post

pytestmark = pytest.mark.e2e

TOKEN = "/oauth/token"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def usage(db_url) -> UsageAccounts:
    return UsageAccounts(db_url)


@pytest.fixture
def client(usage, db_url) -> tuple[str, str, str]:
    """(user_id, client_id, client_secret) of a fresh user."""
    user_id = usage.user()
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, user_id)
    return user_id, client_id, secret


def basic(client_id: str, secret: str) -> str:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def ask(api, form: dict | str, authorization: str | None = None,
        content_type: str = FORM) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if authorization:
        headers["Authorization"] = authorization
    body = form if isinstance(form, str) else urlencode(form)
    return api.http.post(TOKEN, content=body.encode(), headers=headers)


def token_of(response: httpx.Response) -> str:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == ["access_token", "token_type", "expires_in"], body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 30
    return body["access_token"]


def oauth_error(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error and set(body) <= {"error", "error_description"}, body
    return body


def stats(api, token: str, kind: str = "storage") -> httpx.Response:
    return api.get(f"/v1/stats/{kind}", token)


# --- issuing -------------------------------------------------------------------------------


def test_a_token_from_the_form_body_is_accepted_like_a_key(api, client):
    _, client_id, secret = client
    token = token_of(ask(api, {"grant_type": "client_credentials", "client_id": client_id,
                               "client_secret": secret}))
    response = stats(api, token)
    assert response.status_code != 401, response.text
    assert response.status_code == 200, response.text


def test_a_token_with_http_basic(api, client):
    _, client_id, secret = client
    token = token_of(ask(api, {"grant_type": "client_credentials"}, basic(client_id, secret)))
    assert stats(api, token).status_code == 200


def test_each_request_gives_a_new_token_and_both_work(api, client):
    _, client_id, secret = client
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    first, second = token_of(ask(api, form)), token_of(ask(api, form))
    assert first != second
    assert {stats(api, t).status_code for t in (first, second)} == {200}


def test_a_scope_parameter_and_a_charset_are_ignored(api, client):
    _, client_id, secret = client
    token_of(ask(api, {"grant_type": "client_credentials", "scope": "stats"},
                 basic(client_id, secret), content_type=FORM + "; charset=UTF-8"))


# --- errors (RFC 6749 §5.2) ----------------------------------------------------------------


def test_a_wrong_secret_is_invalid_client(api, client):
    _, client_id, secret = client
    response = ask(api, {"grant_type": "client_credentials", "client_id": client_id,
                         "client_secret": secret + "x"})
    assert oauth_error(response, 401, "invalid_client") == {"error": "invalid_client"}
    assert "www-authenticate" not in response.headers  # no Basic was tried


def test_a_wrong_secret_with_basic_asks_for_basic(api, client):
    _, client_id, secret = client
    response = ask(api, {"grant_type": "client_credentials"}, basic(client_id, "nope"))
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize("credentials", [
    {"client_id": "esc_unknown", "client_secret": "whatever"},
    {"client_id": "esc_unknown"},
    {},
])
def test_unknown_or_missing_client_is_invalid_client(api, credentials):
    oauth_error(ask(api, {"grant_type": "client_credentials", **credentials}), 401,
                "invalid_client")


@pytest.mark.parametrize("authorization", ["Basic !!!", "Basic " + base64.b64encode(
    b"no-colon").decode()])
def test_unreadable_basic_is_invalid_client(api, authorization):
    response = ask(api, {"grant_type": "client_credentials"}, authorization)
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


def test_a_revoked_client_gets_no_token(api, client, db_url):
    _, client_id, secret = client
    with psycopg.connect(db_url) as conn:
        assert oauth.revoke_client(conn, client_id) == 1
    oauth_error(ask(api, {"grant_type": "client_credentials"}, basic(client_id, secret)), 401,
                "invalid_client")


@pytest.mark.parametrize("grant", ["password", "authorization_code", "refresh_token",
                                   "CLIENT_CREDENTIALS"])
def test_other_grants_are_unsupported(api, client, grant):
    _, client_id, secret = client
    response = ask(api, {"grant_type": grant}, basic(client_id, secret))
    assert oauth_error(response, 400, "unsupported_grant_type") == {
        "error": "unsupported_grant_type"}


@pytest.mark.parametrize("case", ["no grant", "empty grant", "repeated parameter",
                                  "two ways of authenticating", "json body", "not utf-8"])
def test_malformed_requests_are_invalid_request(api, client, case):
    _, client_id, secret = client
    auth = basic(client_id, secret)
    if case == "no grant":
        response = ask(api, {}, auth)
    elif case == "empty grant":
        response = ask(api, "grant_type=", auth)
    elif case == "repeated parameter":
        response = ask(api, "grant_type=client_credentials&grant_type=client_credentials", auth)
    elif case == "two ways of authenticating":
        response = ask(api, {"grant_type": "client_credentials", "client_id": client_id,
                             "client_secret": secret}, auth)
    elif case == "json body":
        response = ask(api, json.dumps({"grant_type": "client_credentials"}), auth,
                       content_type="application/json")
    else:
        response = api.http.post(TOKEN, content=b"grant_type=\xff", headers={
            "Content-Type": FORM, "Authorization": auth})
    body = oauth_error(response, 400, "invalid_request")
    assert body.get("error_description")


# --- tokens at the API ---------------------------------------------------------------------


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def test_an_expired_token_is_401(api, client, db_url):
    _, client_id, secret = client
    token = token_of(ask(api, {"grant_type": "client_credentials"}, basic(client_id, secret)))
    with psycopg.connect(db_url) as conn:  # before its first use: nothing cached yet
        updated = conn.execute(
            "UPDATE oauth_access_tokens SET expires_at = now() - interval '1 second'"
            " WHERE token_hash = %s", (_hash(token),)).rowcount
    assert updated == 1
    response = stats(api, token)
    assert response.status_code == 401 and response.json() == NOT_AUTHENTICATED


@pytest.mark.parametrize("token", ["est_not-a-token", "esc_abc"])
def test_a_made_up_token_is_401(api, token):
    response = stats(api, token)
    assert response.status_code == 401 and response.json() == NOT_AUTHENTICATED


def test_a_client_secret_is_not_a_token(api, client):
    _, client_id, secret = client
    assert stats(api, secret).status_code == 401
    assert stats(api, client_id).status_code == 401


def test_a_token_cannot_ingest_usage(api, client, frozen_now):
    user_id, client_id, secret = client
    token = token_of(ask(api, {"grant_type": "client_credentials"}, basic(client_id, secret)))
    response = post(api, json.dumps([event("ev-token", user_id, frozen_now)]), token)
    assert response.status_code == 403 and response.json()["type"] == "forbidden"


def test_a_users_token_never_gives_another_users_data(api, usage, frozen_now, db_url):
    ingest_key = usage.ingest_key()
    users = {}
    for name, size in (("a", 111), ("b", 222_000)):
        user_id = usage.user()
        with psycopg.connect(db_url) as conn:
            client_id, secret = oauth.create_client(conn, user_id)
        items = [event(f"ev-{user_id}-{i}", user_id, frozen_now, bytes=size) for i in range(3)]
        assert post(api, json.dumps(items), ingest_key).status_code == 200
        token = token_of(ask(api, {"grant_type": "client_credentials"},
                             basic(client_id, secret)))
        users[name] = (user_id, token, 3 * size)
    for name, (user_id, token, total) in users.items():
        response = stats(api, token, "bandwidth")
        assert response.status_code == 200, response.text
        facts = response.json()["stats"]
        assert facts, response.text
        assert {f["user"]["id"] for f in facts} == {user_id}
        assert sum(f["bandwidth_data"] for f in facts) == total, (name, facts)
        other = users["b" if name == "a" else "a"][0]
        assert other not in response.text
