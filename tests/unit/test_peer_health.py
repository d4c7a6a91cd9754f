"""Health answers for the services of other processes (edgestats_core.peer_health)."""

from __future__ import annotations

import asyncio

from edgestats_core.peer_health import NOT_SERVING, PeerHealth


def test_a_peer_that_does_not_answer_is_not_serving():
    async def ask() -> object:
        servicer = PeerHealth((("edgestats.sql_query.v1.SqlQueryJsonService", "127.0.0.1:1"),))
        try:
            return await servicer.peer_status("edgestats.sql_query.v1.SqlQueryJsonService")
        finally:
            await servicer.close()

    assert asyncio.run(ask()) == NOT_SERVING


def test_a_service_without_peers_is_not_serving_when_asked_directly():
    servicer = PeerHealth()
    assert asyncio.run(servicer.peer_status("no.such.Service")) == NOT_SERVING
