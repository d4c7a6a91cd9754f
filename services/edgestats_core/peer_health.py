"""gRPC health for every service name of the API, whichever process the gateway sends the
check to: a process answers for its own services, and asks the processes of the others
(EDGESTATS_PEERS, `service=host:port` pairs) — SERVING when any of them serves it."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PEER_TIMEOUT_SECONDS = 1.0


class PeerHealth(health.aio.HealthServicer):
    """The standard health service, plus the services of the peer processes."""

    def __init__(self, peers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self._own: set[str] = set()
        self._peers: dict[str, list[str]] = {}
        for service, target in peers:
            self._peers.setdefault(service, []).append(target)
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def set(self, service: str, status) -> None:  # type: ignore[override]
        self._own.add(service)
        await super().set(service, status)

    async def Check(self, request, context):
        if request.service in self._own or request.service not in self._peers:
            return await super().Check(request, context)
        return health_pb2.HealthCheckResponse(status=await self.peer_status(request.service))

    async def peer_status(self, service: str):
        """SERVING when a peer process serving `service` says so, else NOT_SERVING."""
        for target in self._peers.get(service, ()):
            if target not in self._channels:
                self._channels[target] = grpc.aio.insecure_channel(target)
            stub = health_pb2_grpc.HealthStub(self._channels[target])
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                         timeout=PEER_TIMEOUT_SECONDS)
            except grpc.RpcError:
                continue
            if reply.status == SERVING:
                return SERVING
        return NOT_SERVING

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
