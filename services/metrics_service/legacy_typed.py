"""LegacyStatsService: the typed face of the Legacy Stats API for gRPC callers.

A typed request becomes the query and path parameters it stands for (QueryParams.of), so
validation, SQL, formulas and the result cache are the JSON face's (LegacyAnswers); the
rendered rows and points become typed messages. Field violations name the typed request's
fields (`window`, `page_size`).
"""

from __future__ import annotations

from dataclasses import replace

from google.protobuf.message import Message

from edgestats.metrics.v1 import legacy_stats_service_pb2 as pb
from edgestats.metrics.v1 import legacy_stats_service_pb2_grpc as rpc
from edgestats.metrics.v1 import types_pb2
from edgestats_core.errors import FieldError, missing
from edgestats_core.http_query import QueryParams
from edgestats_core.rich_errors import renaming_fields
from edgestats_core.typed_words import enum_text
from metrics_service.legacy_stats import STAT_RPCS, LegacyAnswers

SERVICE = "edgestats.metrics.v1.LegacyStatsService"

# LegacyWindow -> the JSON face's `time`
WINDOWS: dict[int, str] = {
    pb.LEGACY_WINDOW_LIVE: "live",
    pb.LEGACY_WINDOW_TEN_MINUTES: "10m",
    pb.LEGACY_WINDOW_ONE_HOUR: "1h",
    pb.LEGACY_WINDOW_ONE_DAY: "24h",
    pb.LEGACY_WINDOW_ONE_WEEK: "1w",
    pb.LEGACY_WINDOW_ONE_MONTH: "1M",
    pb.LEGACY_WINDOW_TWO_MONTHS: "2M",
    pb.LEGACY_WINDOW_CURRENT_MONTH: "CM",
    pb.LEGACY_WINDOW_LAST_MONTH: "LM",
}
# the JSON face's parameter -> the typed request's field, where they differ
TYPED_NAMES = {"time": "window", "per_page": "page_size"}
SCOPE_FILTERS = ("bitrate", "representation_id")
# summary level -> its typed row's key fields (the rest of a row are its metrics)
SUMMARY_KEYS = {
    "channel": ("channel_id",),
    "stream": ("stream_id", "stream_uri"),
    "representation": ("bitrate", "representation_id"),
}
# a summary row's text the typed face leaves out (total_viewing_time holds the seconds)
UNTYPED_KEYS = frozenset({"aggregate", "total_pretty_viewing_time"})


def given(request: Message, name: str) -> bool:
    """Whether the request has the field `name` and sets it (a plain string: non-empty)."""
    field = request.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        return False
    return request.HasField(name) if field.has_presence else bool(getattr(request, name))


def params_of(request: Message) -> QueryParams:
    """The query and path parameters a typed legacy request stands for."""
    values: dict[str, str] = {}
    if request.window:
        values["time"] = WINDOWS.get(request.window, str(request.window))
    if getattr(request, "source", 0):
        values["source"] = enum_text(types_pb2.Source, "SOURCE_", request.source)
    for name in ("channel_id", "stream_id", *SCOPE_FILTERS):
        if given(request, name):
            values[name] = getattr(request, name)
    for name, parameter in (("page_size", "per_page"), ("page", "page")):
        if given(request, name):
            values[parameter] = str(getattr(request, name))
    return QueryParams.of(values)


def scope_problems(request: Message, required: tuple[str, ...] = ()) -> list[FieldError]:
    """What the typed face refuses where the JSON paths cannot be asked: a `required` scope
    field left empty, a stream without its channel, rendition filters without a stream."""
    problems = [missing("path", name) for name in required if not given(request, name)]
    stream = given(request, "stream_id")
    if "channel_id" not in required and stream and not given(request, "channel_id"):
        problems.append(FieldError(("path", "channel_id"), "a stream needs its channel_id",
                                   "value_error.missing"))
    if "stream_id" not in required and not stream:
        problems += [FieldError(("query", name), "applies to one stream only: set stream_id",
                                "value_error")
                     for name in SCOPE_FILTERS if given(request, name)]
    return problems


def typed_loc(error: FieldError) -> FieldError:
    """A field error of the JSON parameters, located on the typed request."""
    name = str(error.loc[-1])
    return replace(error, loc=(*error.loc[:-1], TYPED_NAMES.get(name, name)))


# field errors of the JSON face's validation, renamed to the typed request's fields
typed_fields = renaming_fields(typed_loc)


def metrics_of(row: dict, target: Message) -> None:
    """The metric keys of a rendered summary row into a LegacySummaryMetrics."""
    for key, value in row.items():
        if key not in UNTYPED_KEYS:
            setattr(target, key, value)


def point_into(point: dict, item: Message) -> None:
    """A rendered point ({"datetime": epoch ms, <key>: value}) into a typed point: its one
    value, whatever the JSON key (`agg_throughput_cdn`), into the point's value field; null
    as absent."""
    value_field = next(f for f in item.DESCRIPTOR.fields if f.name != "datetime")
    item.datetime.FromMilliseconds(point["datetime"])
    (value,) = (v for k, v in point.items() if k != "datetime")
    if value is None:
        return
    if value_field.message_type is not None:  # a map of device counts
        getattr(item, value_field.name).update(value)
    else:
        setattr(item, value_field.name, value)


def _output(method: str) -> type[Message]:
    service = pb.DESCRIPTOR.services_by_name["LegacyStatsService"]
    return getattr(pb, service.methods_by_name[method].output_type.name)


class LegacyStatsServicer(rpc.LegacyStatsServiceServicer):
    """The typed Legacy Stats API: the same answers as the JSON paths, as messages."""

    def __init__(self, answers: LegacyAnswers) -> None:
        self.answers = answers

    @typed_fields
    async def summaries(self, request, level: str, response: Message,
                        required: tuple[str, ...]) -> Message:
        params = params_of(request)
        answer = await self.answers.summaries(params, level, scope_problems(request, required))
        if given(request, "page_size") or given(request, "page"):
            (page,) = answer
            rows, response.total_pages, response.page = (page["results"], page["total_pages"],
                                                          page["page"])
        else:
            rows, response.total_pages, response.page = answer, 1 if answer else 0, 0
        keys = SUMMARY_KEYS[level]
        for row in rows:
            item = response.summaries.add()
            for key in keys:
                setattr(item, key, row[key])
            metrics_of({k: v for k, v in row.items() if k not in keys}, item.metrics)
        return response

    async def ListChannelSummaries(self, request, context):
        return await self.summaries(request, "channel", pb.ListChannelSummariesResponse(), ())

    async def ListStreamSummaries(self, request, context):
        return await self.summaries(request, "stream", pb.ListStreamSummariesResponse(),
                                    ("channel_id",))

    async def ListRepresentationSummaries(self, request, context):
        return await self.summaries(request, "representation",
                                    pb.ListRepresentationSummariesResponse(),
                                    ("channel_id", "stream_id"))

    @typed_fields
    async def GetSummaryAggregate(self, request, context):
        row = await self.answers.aggregate(params_of(request), scope_problems(request))
        response = pb.GetSummaryAggregateResponse()
        metrics_of(row, response.metrics)
        return response

    @typed_fields
    async def points(self, request, metric_name: str, last: bool,
                     cls: type[Message]) -> Message:
        points = await self.answers.points(params_of(request), metric_name, last,
                                           scope_problems(request))
        response = cls()
        for point in points:
            point_into(point, response.points.add())
        return response


def _stat_method(method: str, metric_name: str, last: bool):
    cls = _output(method)

    async def call(self: LegacyStatsServicer, request, context):
        return await self.points(request, metric_name, last, cls)

    return call


for _stem, _metric in STAT_RPCS.items():
    for _last, _name in ((False, f"Get{_stem}"), (True, f"Get{_stem}LastPoint")):
        setattr(LegacyStatsServicer, _name, _stat_method(_name, _metric, _last))
