"""OAuthService: client-credentials access tokens (RFC 6749 §4.4, §5; CONTRACT §8).

`POST /oauth/token` is public (the client authenticates itself): the form body carries
`grant_type=client_credentials` and the client id and secret, or the credentials come as
HTTP Basic (read from the call's metadata, since no interceptor resolves them).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_plus

import grpc
from google.api import httpbody_pb2

from edgestats.usage_billing.v1 import oauth_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.db import Database
from edgestats_core.errors import ApiError
from edgestats_core.tenancy import oauth
from edgestats_core.tenancy.interceptor import add_response_header

SERVICE = "edgestats.usage_billing.v1.OAuthService"
PUBLIC_METHODS = frozenset({f"/{SERVICE}/IssueToken"})
FORM = "application/x-www-form-urlencoded"
GRANT = "client_credentials"


@dataclass
class OAuthError(ApiError):
    """An RFC 6749 §5.2 error body: `{"error": …}` (+ `error_description` for a bad request)."""

    error: str = "invalid_request"
    description: str | None = None
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT

    def body(self) -> dict:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(basic: bool) -> OAuthError:
    """401; a client that tried Basic is told which scheme to use (RFC 6749 §5.2)."""
    if basic:
        add_response_header("www-authenticate", 'Basic realm="edgestats"')
    return OAuthError("invalid_client", None, grpc.StatusCode.UNAUTHENTICATED)


@dataclass(frozen=True)
class TokenRequest:
    grant_type: str
    client_id: str | None
    client_secret: str | None
    basic: bool  # credentials came as HTTP Basic


def parse_form(data: bytes, content_type: str) -> dict[str, str]:
    """The form parameters; each may appear once (RFC 6749 §3.2)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != FORM:
        raise invalid_request(f"the body must be {FORM}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_request("the body is not valid UTF-8") from exc
    form = parse_qs(text, keep_blank_values=True)
    repeated = sorted(name for name, values in form.items() if len(values) > 1)
    if repeated:
        raise invalid_request(f"parameter given more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in form.items()}


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """(client_id, client_secret) of `Authorization: Basic …` (each form-encoded, RFC 6749
    §2.3.1); None without a Basic header; invalid_client when it cannot be read."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        pair = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_client(basic=True) from exc
    client_id, colon, secret = pair.partition(":")
    if not colon:
        raise invalid_client(basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


def token_request(data: bytes, content_type: str, authorization: str | None) -> TokenRequest:
    """Validate a token request; errors in the order invalid_request, unsupported_grant_type,
    invalid_client (no credentials, or two ways of sending them)."""
    form = parse_form(data, content_type)
    basic = parse_basic(authorization)
    grant = form.get("grant_type", "")
    if not grant:
        raise invalid_request("grant_type is required")
    if grant != GRANT:
        raise OAuthError("unsupported_grant_type")
    in_form = "client_id" in form or "client_secret" in form
    if basic and in_form:
        raise invalid_request("send the client credentials either as HTTP Basic or in the body")
    if basic:
        return TokenRequest(grant, basic[0], basic[1], basic=True)
    return TokenRequest(grant, form.get("client_id"), form.get("client_secret"), basic=False)


def token_body(access_token: str, expires_in: int) -> bytes:
    """The RFC 6749 §5.1 answer."""
    answer = {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in}
    return json.dumps(answer, separators=(",", ":")).encode()


class OAuthServicer(rpc.OAuthServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def IssueToken(self, request, context):
        # tokens and the errors about them must not be cached (RFC 6749 §5.1)
        add_response_header("cache-control", "no-store")
        add_response_header("pragma", "no-cache")
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        asked = token_request(request.data, request.content_type, authorization)
        try:
            token, expires_in = await oauth.issue_token(
                self.db, asked.client_id or "", asked.client_secret or "",
                self.settings.token_ttl_seconds,
            )
        except oauth.InvalidClient as exc:
            raise invalid_client(asked.basic) from exc
        return httpbody_pb2.HttpBody(
            content_type="application/json", data=token_body(token, expires_in)
        )
