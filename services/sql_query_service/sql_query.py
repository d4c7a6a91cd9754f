"""SqlQueryJsonService: thin adapters from the SQL RPCs to the Druid-SQL pipeline and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson
from google.api import httpbody_pb2

from edgestats.sql_query.v1 import sql_query_json_service_pb2  # noqa: F401 - descriptor for reflection
from edgestats.sql_query.v1 import sql_query_json_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.db import Database
from edgestats_core.errors import NotFound
from edgestats_core.tenancy.interceptor import add_response_header, current_principal
from edgestats_core.tenancy.principals import Principal
from sql_query_service import druid_errors, execution, query_specs, results
from sql_query_service.druid_sql import datasources, functions, pipeline
from sql_query_service.druid_sql.problems import SqlError

SERVICE = "edgestats.sql_query.v1.SqlQueryJsonService"
PUBLIC_METHODS = frozenset({f"/{SERVICE}/GetStatus"})
STATUS = {"version": "edgestats-sql-1", "modules": []}


def json_body(value: object, content_type: str = "application/json") -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type=content_type, data=orjson.dumps(value))


class SqlQueries:
    """What both faces of the SQL endpoint ask: one validated query translated, checked and
    run on its database (the JSON face renders the rows, the typed face converts them)."""

    def __init__(self, dbs: Databases, settings: Settings) -> None:
        self.dbs = dbs
        self.settings = settings

    async def database(self, translation: pipeline.Translation, principal: Principal) -> Database:
        """The one database a query reads: its datasources' region's, in a sharded region
        the shard of the customers of that region it names (400 when they are stored apart;
        no datasource: the caller's region's)."""
        found: dict[int, Database] = {}
        for each in translation.regions:
            if await self.dbs.sharded(each):
                # a customer of another region has no rows here, wherever its id would hash
                here = [c for c in translation.named if principal.region_of(c) in (each, None)]
                for customer in here or translation.named[:1]:
                    db = await self.dbs.reader(each, customer)
                    found[id(db)] = db
            else:
                db = await self.dbs.reader(each)
                found[id(db)] = db
        if len(found) > 1:
            if len(translation.regions) > 1:
                raise SqlError("A query reads the datasources of one region: "
                               + ", ".join(translation.regions) + " are stored apart")
            raise SqlError("A query reads customers stored together: "
                           + ", ".join(translation.named) + " are on different shards of "
                           + translation.regions[0] + "; query them one at a time")
        if found:
            return next(iter(found.values()))
        # no datasource (SELECT 1, the catalog): the caller's own data's database
        customer = (translation.named or translation.customers or (None,))[0]
        return await self.dbs.reader(principal.region, customer)

    def translate(self, spec: query_specs.QuerySpec, principal: Principal) -> pipeline.Translation:
        options = functions.Options(
            self.settings.now(), spec.approximate_count_distinct, spec.skip_empty_buckets
        )
        return pipeline.translate(spec.query, principal, options, list(spec.parameters))

    async def run(self, spec: query_specs.QuerySpec, principal: Principal) -> execution.Result:
        """The answer to a validated query: translated, checked and run read-only."""
        translation = self.translate(spec, principal)
        db = await self.database(translation, principal)
        return await execution.run(db, translation, spec, principal)

    async def stream(self, spec: query_specs.QuerySpec, principal: Principal,
                     size: int) -> AsyncIterator[execution.Result]:
        """The answer of `run` in parts of at most `size` rows, read from PostgreSQL as it
        produces them (`execution.stream`)."""
        translation = self.translate(spec, principal)
        db = await self.database(translation, principal)
        async with aclosing(execution.stream(db, translation, spec, principal, size)) as parts:
            async for part in parts:
                yield part

    async def cancel(self, principal: Principal, query_id: str) -> None:
        """Cancel the caller's running query with this id, on whichever database runs it;
        404 when none does."""
        cancelled = [await execution.cancel(db, principal, query_id) for db in self.dbs.all()]
        if not any(cancelled):
            raise NotFound()


class SqlQueryServicer(rpc.SqlQueryJsonServiceServicer):
    def __init__(self, queries: SqlQueries) -> None:
        self.queries = queries

    async def Query(self, request, context):
        with druid_errors.for_path(context):
            principal = current_principal()
            spec = query_specs.parse(request, principal)
            result = await self.queries.run(spec, principal)
            body = results.render(result.names, result.rows, spec.result_format, spec.header)
        add_response_header("x-druid-sql-query-id", spec.query_id)  # sent with success only
        return body

    async def CancelQuery(self, request, context):
        await self.queries.cancel(current_principal(), request.id)
        add_response_header("x-http-status", "202")  # errors.lua sets the status
        return httpbody_pb2.HttpBody(content_type="application/json", data=b"")

    async def GetStatus(self, request, context):
        return json_body(STATUS)

    async def ListDatasources(self, request, context):
        return json_body(datasources.names_for(current_principal()))
