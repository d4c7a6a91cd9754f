"""BeaconIngestService: JSON/NDJSON and typed gRPC batches into the beacons table."""

from __future__ import annotations

from edgestats.metrics.v1 import beacon_ingest_service_pb2 as pb  # also registers the service
from edgestats.metrics.v1 import beacon_ingest_service_pb2_grpc as rpc
from edgestats_core import prometheus_metrics
from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.errors import Forbidden, PayloadTooLarge
from edgestats_core.ingest_body import MAX_ITEMS
from edgestats_core.tenancy.interceptor import current_principal
from edgestats_core.tenancy.principals import Principal
from metrics_service import beacon_store
from metrics_service.beacon_json import validate_body
from metrics_service.beacon_messages import validate_messages
from metrics_service.beacon_validation import Batch

SERVICE = "edgestats.metrics.v1.BeaconIngestService"
# the fields a rejection may name (its metric label)
BEACON_FIELDS = frozenset({"__time", *(c.druid for c in COLUMNS)})


def customer_of(principal: Principal) -> str:
    if not principal.is_customer or not principal.customer_id:
        raise Forbidden("Beacon ingestion needs a customer key", "KEY_KIND_FORBIDDEN")
    return principal.customer_id


class BeaconIngestServicer(rpc.BeaconIngestServiceServicer):
    def __init__(self, dbs: Databases, settings: Settings) -> None:
        self.dbs = dbs
        self.settings = settings

    async def _store(self, batch: Batch) -> pb.IngestBeaconsResponse:
        # a customer's beacons live only in its region's database
        principal = current_principal()
        db = await self.dbs.primary(principal.region, principal.customer_id)
        inserted = await beacon_store.store(db, batch.rows)
        prometheus_metrics.count_items("beacon", inserted, len(batch.rows) - inserted,
                                       batch.rejected, BEACON_FIELDS)
        return pb.IngestBeaconsResponse(
            accepted=len(batch.rows),
            duplicates=len(batch.rows) - inserted,
            rejected=[pb.RejectedItem(index=i, reason=r) for i, r in batch.rejected],
        )

    async def IngestBeacons(self, request, context):
        if len(request.beacons) > MAX_ITEMS:
            raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
        customer_id = customer_of(current_principal())
        batch = validate_messages(request.beacons, customer_id, self.settings.now())
        return await self._store(batch)

    async def IngestBeaconsJson(self, request, context):
        customer_id = customer_of(current_principal())  # 401/403 before reading the body
        return await self._store(validate_body(request.data, customer_id, self.settings.now()))
