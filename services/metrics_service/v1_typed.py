"""MetricsService: the typed face of the v1 metrics for gRPC callers.

A typed request becomes the JSON body it stands for, so validation, layer choice, SQL and
formulas are the JSON face's (V1Answers); the rendered rows become typed rows. Field
violations name the typed request's fields (`filter.channel_id`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from edgestats.metrics.v1 import metrics_service_pb2 as pb
from edgestats.metrics.v1 import metrics_service_pb2_grpc as rpc
from edgestats.metrics.v1 import types_pb2
from edgestats_core.errors import BadRequest, FieldError, missing
from edgestats_core.metrics.v1_definitions import V1Metric
from edgestats_core.query.granularity import parse_grafana_value
from edgestats_core.rich_errors import renaming_fields
from edgestats_core.typed_words import enum_text
from metrics_service.v1_metrics import METRIC_RPCS, V1Answers, add_metric_rpcs

SERVICE = "edgestats.metrics.v1.MetricsService"

# metric path -> the typed response message of its RPCs
RESPONSES: dict[str, type[Message]] = {
    path: getattr(pb, pb.DESCRIPTOR.services_by_name["MetricsService"]
                  .methods_by_name[f"Get{stem}"].output_type.name)
    for stem, path in METRIC_RPCS.items()
}
FILTER_FIELDS = ("source", "channel_id", "bitrate", "stream_id", "stream_uri", "stream_state",
                 "representation_id")
# response message -> its row message
_ROW_CLASSES: dict[type[Message], type[Message]] = {
    cls: type(cls().rows.add()) for cls in RESPONSES.values()}
LAYER_NAMES = {"realtime": types_pb2.DATA_LAYER_REALTIME,
               "historical-minute": types_pb2.DATA_LAYER_HISTORICAL_MINUTE,
               "historical-hour": types_pb2.DATA_LAYER_HISTORICAL_HOUR}


def granularity_of(name: str) -> int:
    """`fifteen_minute` → GRANULARITY_FIFTEEN_MINUTE."""
    return types_pb2.Granularity.Value(f"GRANULARITY_{name.upper()}")


def _instant(request: Message, name: str, body: dict) -> None:
    if request.HasField(name):
        stamp = getattr(request, name).ToDatetime(tzinfo=UTC)
        body[name] = stamp.isoformat().replace("+00:00", "Z")


def body_of(request: Message, reseller: bool) -> dict:
    """The JSON body a typed metrics request stands for."""
    body: dict = {}
    _instant(request, "from_date", body)
    _instant(request, "to_date", body)
    if request.granularity:
        body["granularity"] = enum_text(types_pb2.Granularity, "GRANULARITY_",
                                        request.granularity)
    f = request.filter
    if f.source:
        body["source"] = enum_text(types_pb2.Source, "SOURCE_", f.source)
    if f.stream_state:
        body["stream_state"] = enum_text(types_pb2.StreamState, "STREAM_STATE_", f.stream_state)
    for name in ("channel_id", "stream_id", "stream_uri", "representation_id"):
        if f.HasField(name):
            body[name] = getattr(f, name)
    if f.HasField("bitrate"):
        body["bitrate"] = str(f.bitrate)
    if request.HasField("approximate_count_distinct"):
        body["approximate_count_distinct"] = request.approximate_count_distinct
    if request.data_layer:
        body["data_layer"] = enum_text(types_pb2.DataLayer, "DATA_LAYER_",
                                       request.data_layer).replace("_", "-")
    if reseller:
        if request.customer_ids:
            body["customer_ids"] = list(request.customer_ids)
        if request.region:
            body["region"] = enum_text(types_pb2.Region, "REGION_", request.region)
    elif request.HasField("target_customer_id"):
        body["target_customer_id"] = request.target_customer_id
    return body


def typed_loc(error: FieldError) -> FieldError:
    """A field error of the JSON body, located on the typed request."""
    if len(error.loc) == 2 and error.loc[1] in FILTER_FIELDS:
        return replace(error, loc=(error.loc[0], "filter", error.loc[1]))
    return error


# field errors of the JSON face's validation, renamed to the typed request's fields
typed_fields = renaming_fields(typed_loc)


def response_of(cls: type[Message], rows: list[dict]) -> Message:
    """Rendered rows as a typed response: the timestamp as a Timestamp, null as absent."""
    row_class = _ROW_CLASSES[cls]
    typed = []
    for row in rows:
        fields = {k: v for k, v in row.items() if v is not None}
        moment = datetime.fromisoformat(fields["timestamp"])  # whole seconds, UTC
        fields["timestamp"] = timestamp_pb2.Timestamp(seconds=int(moment.timestamp()))
        typed.append(row_class(**fields))
    return cls(rows=typed)


class MetricsServicer(rpc.MetricsServiceServicer):
    """The typed metrics: the same answers as the JSON paths, as messages."""

    def __init__(self, answers: V1Answers) -> None:
        self.answers = answers

    @typed_fields
    async def metric(self, request, metric: V1Metric, reseller: bool) -> Message:
        rows = await self.answers.rows(body_of(request, reseller), metric, reseller)
        return response_of(RESPONSES[metric.path], rows)

    @typed_fields
    async def ListGrafanaGranularities(self, request, context):
        errors = [missing("body", n) for n in ("from_date", "to_date") if not request.HasField(n)]
        if errors:
            raise BadRequest(errors)
        options = self.answers.granularity_options(request.from_date.ToDatetime(tzinfo=UTC),
                                                   request.to_date.ToDatetime(tzinfo=UTC))
        return pb.ListGrafanaGranularitiesResponse(
            granularities=[granularity_of(parse_grafana_value(o["value"])) for o in options])

    @typed_fields
    async def GetGrafanaDataLayer(self, request, context):
        errors = []
        if not request.HasField("from_date"):
            errors.append(missing("body", "from_date"))
        name = enum_text(types_pb2.Granularity, "GRANULARITY_", request.granularity)
        if name is None:
            errors.append(missing("body", "granularity"))
        elif name.isdigit():
            errors.append(FieldError(("body", "granularity"), "unknown granularity",
                                     "type_error.enum"))
        if errors:
            raise BadRequest(errors)
        layer = self.answers.dashboard_layer(request.from_date.ToDatetime(tzinfo=UTC), name)
        return pb.GetGrafanaDataLayerResponse(layer=LAYER_NAMES[layer])


add_metric_rpcs(MetricsServicer)
