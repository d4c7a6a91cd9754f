"""UsageStatsService: the typed face of the Statistics resource for gRPC callers.

A typed request becomes the JSON face's query parameters (enums as their words) plus its
bounds as instants, checked by the same validation (stats_params) and
answered by the same reads and builders (usage_stats.UsageAnswers); the answer's facts
become typed records, key by key. The JSON face's field errors are located on
`["query", name]` (`["path", "tag"]`): the typed request's fields have the same names, so
their violations name them as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message

from edgestats.usage_billing.v1 import usage_stats_service_pb2 as pb
from edgestats.usage_billing.v1 import usage_stats_service_pb2_grpc as rpc
from edgestats_core.errors import BadRequest, FieldError, missing, not_in_enum
from edgestats_core.http_query import QueryParams
from edgestats_core.tenancy.interceptor import current_principal
from edgestats_core.typed_words import enum_text
from usage_billing_service import stats_params
from usage_billing_service.stats_params import metadata_of, usage_user
from usage_billing_service.usage_stats import UsageAnswers

SERVICE = "edgestats.usage_billing.v1.UsageStatsService"


def _fields(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


def _instant(request: Message, name: str) -> datetime | None:
    """A bound as a UTC instant (microsecond precision), None when absent."""
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise BadRequest([FieldError(("body", name), "timestamp out of range",
                                     "value_error")]) from None


def _usage_type(request: pb.UsageStatsRequest) -> str:
    kind = enum_text(pb.UsageType, "USAGE_TYPE_", request.type)
    if kind is None:
        raise BadRequest([missing("body", "type")])
    if kind not in stats_params.TYPES:
        raise BadRequest([not_in_enum("body", "type", list(stats_params.TYPES))])
    return kind


def response_of(cls: type[Message], facts: list[dict]) -> Message:
    """The answer's facts as typed records: every key is the field of the same name; bounds
    (epoch ms) become Timestamps, refs and top tags messages."""
    response = cls()
    for fact in facts:
        _fill(response.stats.add(), fact)
    return response


def _fill(record: Message, fact: dict) -> None:
    for key, value in fact.items():
        if key in ("from_date", "to_date"):
            getattr(record, key).FromMilliseconds(value)
        elif isinstance(value, dict):
            _fill(getattr(record, key), value)
        elif isinstance(value, list):
            for item in value:
                _fill(getattr(record, key).add(), item)
        else:
            setattr(record, key, value)


class UsageStatsServicer(rpc.UsageStatsServiceServicer):
    """The typed Statistics resource: the same answers as the JSON paths, as messages."""

    def __init__(self, answers: UsageAnswers) -> None:
        self.answers = answers

    async def GetStats(self, request: pb.UsageStatsRequest, context):
        user_id = usage_user(current_principal())
        kind = _usage_type(request)
        start, end = _instant(request, "from_date"), _instant(request, "to_date")
        params = QueryParams.of(_fields(type=kind,
            view=enum_text(pb.UsageView, "USAGE_VIEW_", request.view),
            action=enum_text(pb.UsageAction, "USAGE_ACTION_", request.action),
            current_subscription="true" if request.current_subscription else None))
        query = stats_params.stats_query(user_id, kind, start, end, params,
                                         metadata_of(context))
        return response_of(pb.UsageStatsResponse, await self.answers.stats(query))

    async def GetTagStats(self, request: pb.TagStatsRequest, context):
        user_id = usage_user(current_principal())
        start, end = _instant(request, "from_date"), _instant(request, "to_date")
        if not request.tag:
            raise BadRequest([missing("path", "tag")])
        params = QueryParams.of(_fields(tag=request.tag,
            application_id=(request.application_id if request.HasField("application_id")
                            else None),
            action=enum_text(pb.UsageAction, "USAGE_ACTION_", request.action)))
        query = stats_params.tag_query(user_id, request.tag, start, end, params,
                                       metadata_of(context))
        return response_of(pb.TagStatsResponse, await self.answers.tag_stats(query))

    async def GetTopTags(self, request: pb.TopTagsRequest, context):
        user_id = usage_user(current_principal())
        start, end = _instant(request, "from_date"), _instant(request, "to_date")
        params = QueryParams.of(_fields(
            application_id=(request.application_id if request.HasField("application_id")
                            else None)))
        query = stats_params.tag_query(user_id, None, start, end, params,
                                       metadata_of(context))
        return response_of(pb.TopTagsResponse, await self.answers.top_tags(query))
