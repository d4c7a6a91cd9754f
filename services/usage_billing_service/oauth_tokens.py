"""OAuthService: client-credentials access tokens (stub, being built)."""

from __future__ import annotations

from edgestats.usage_billing.v1 import oauth_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.db import Database

SERVICE = "edgestats.usage_billing.v1.OAuthService"
PUBLIC_METHODS = frozenset({f"/{SERVICE}/IssueToken"})


class OAuthServicer(rpc.OAuthServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
