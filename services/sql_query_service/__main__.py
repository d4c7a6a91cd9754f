"""Run the SQL query service: `python -m sql_query_service` (settings from the environment)."""

from __future__ import annotations

import asyncio
import logging

from edgestats.sql_query.v1 import sql_query_json_service_pb2_grpc, sql_query_service_pb2_grpc
from edgestats_core import json_logs
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.server import ServiceBinding, binding, serve_forever
from sql_query_service import sql_query, sql_typed


def bindings(dbs: Databases, settings: Settings) -> list[ServiceBinding]:
    queries = sql_query.SqlQueries(dbs, settings)
    return [binding(sql_query_json_service_pb2_grpc, sql_query.SERVICE,
                    sql_query.SqlQueryServicer(queries)),
            binding(sql_query_service_pb2_grpc, sql_typed.SERVICE,
                    sql_typed.SqlQueryServicer(queries))]


def main() -> None:
    json_logs.configure("edgestats-sql")
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its parse warnings echo customer SQL
    asyncio.run(serve_forever(Settings.from_env(), bindings, sql_query.PUBLIC_METHODS,
                              name="edgestats-sql"))


if __name__ == "__main__":
    main()
