"""BeaconIngestService: JSON/NDJSON and typed gRPC batches into the beacons table."""

from __future__ import annotations

from google.protobuf.message import Message

from edgestats.metrics.v1 import beacon_ingest_service_pb2 as pb  # also registers the service
from edgestats.metrics.v1 import beacon_ingest_service_pb2_grpc as rpc
from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.config import Settings
from edgestats_core.db import Database
from edgestats_core.errors import Forbidden, PayloadTooLarge
from edgestats_core.ingest_body import MAX_ITEMS, parse_body
from edgestats_core.tenancy.interceptor import current_principal
from edgestats_core.tenancy.principals import Principal
from metrics_service import beacon_store
from metrics_service.beacon_validation import validate_all

SERVICE = "edgestats.metrics.v1.BeaconIngestService"


_DRUID = {c.name: c.druid for c in COLUMNS}


def beacon_to_item(beacon: Message) -> dict:
    """A typed Beacon as the Druid-keyed dict the JSON path receives (unset = absent)."""
    item: dict = {}
    for field, value in beacon.ListFields():  # only set fields: empty required ones stay absent
        if field.name == "time":
            item["__time"] = value.seconds * 1000 + value.nanos // 1_000_000
        else:
            item[_DRUID[field.name]] = value
    return item


def customer_of(principal: Principal) -> str:
    if not principal.is_customer or not principal.customer_id:
        raise Forbidden("Beacon ingestion needs a customer key")
    return principal.customer_id


class BeaconIngestServicer(rpc.BeaconIngestServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def _ingest(self, items: list) -> pb.IngestBeaconsResponse:
        customer_id = customer_of(current_principal())
        batch = validate_all(items, customer_id, self.settings.now())
        inserted = await beacon_store.store(self.db, batch.rows)
        return pb.IngestBeaconsResponse(
            accepted=len(batch.rows),
            duplicates=len(batch.rows) - inserted,
            rejected=[pb.RejectedItem(index=i, reason=r) for i, r in batch.rejected],
        )

    async def IngestBeacons(self, request, context):
        if len(request.beacons) > MAX_ITEMS:
            raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
        return await self._ingest([beacon_to_item(b) for b in request.beacons])

    async def IngestBeaconsJson(self, request, context):
        customer_of(current_principal())  # 401/403 before reading the body
        return await self._ingest(parse_body(request.data))
