"""UsageIngestService: JSON/NDJSON and typed gRPC batches of usage events into usage_events."""

from __future__ import annotations

from datetime import UTC

from edgestats.usage_billing.v1 import usage_ingest_service_pb2 as pb  # registers the service
from edgestats.usage_billing.v1 import usage_ingest_service_pb2_grpc as rpc
from edgestats_core import prometheus_metrics
from edgestats_core.config import Settings
from edgestats_core.db import Database
from edgestats_core.errors import Forbidden, PayloadTooLarge
from edgestats_core.ingest_body import MAX_ITEMS, parse_body
from edgestats_core.tenancy.interceptor import current_principal
from usage_billing_service import event_store
from usage_billing_service.event_validation import resolve_all, validate_all

SERVICE = "edgestats.usage_billing.v1.UsageIngestService"
INGEST_ROLE = "usage-ingest"


def event_to_item(event: pb.UsageEvent) -> dict:
    """A typed UsageEvent as the dict the JSON path receives (empty strings and an unset
    timestamp = absent; proto3 cannot tell `bytes: 0` from unset, so it is 0)."""
    item: dict = {"bytes": event.bytes}
    for field, value in event.ListFields():
        if field.name == "timestamp":
            item["timestamp"] = value.ToDatetime(tzinfo=UTC)
        else:
            item[field.name] = value
    return item


# the fields a rejection may name (its metric label)
EVENT_FIELDS = frozenset({"id", "type", "user_id", "application_id", "bytes", "timestamp",
                          "tag"})


def check_role() -> None:
    """Only producers holding a usage-ingest key may record usage (CONTRACT §10)."""
    if current_principal().kind != INGEST_ROLE:
        raise Forbidden("Usage ingestion needs a usage-ingest key", "KEY_KIND_FORBIDDEN")


class UsageIngestServicer(rpc.UsageIngestServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def _record(self, items: list) -> pb.RecordUsageResponse:
        events, rejected = validate_all(items, self.settings.now())
        known = await event_store.accounts(self.db, {e.user_id for _, e in events})
        batch = resolve_all(events, rejected, known)
        inserted = await event_store.store(self.db, batch.rows)
        prometheus_metrics.count_items("usage_event", inserted, len(batch.rows) - inserted,
                                       batch.rejected, EVENT_FIELDS)
        return pb.RecordUsageResponse(
            accepted=len(batch.rows),
            duplicates=len(batch.rows) - inserted,
            rejected=[pb.RejectedEvent(index=i, reason=r) for i, r in batch.rejected],
        )

    async def RecordUsage(self, request, context):
        check_role()
        if len(request.events) > MAX_ITEMS:
            raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
        return await self._record([event_to_item(e) for e in request.events])

    async def RecordUsageJson(self, request, context):
        check_role()  # 401/403 before reading the body
        return await self._record(parse_body(request.data))
