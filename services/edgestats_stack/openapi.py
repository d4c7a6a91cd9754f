"""The OpenAPI 3.0.3 document of the HTTP API, derived from the protobuf descriptor set.

Paths come from each RPC's `google.api.http` rule (with `additional_bindings`), schemas from
the messages, texts from the proto comments, so there is no hand-kept copy of the routes.
The descriptor set must be built with `--include_imports --include_source_info`.

    python -m edgestats_stack.openapi <descriptor.binpb> <out.json>
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

Schema = dict[str, Any]

PACKAGE_PREFIX = "edgestats."
HTTP_BODY = "google.api.HttpBody"
HTTP_RULE_EXTENSION = "google.api.http"
JSON_RESPONSE_EXTENSION = "edgestats.api.v1.json_response"
# Liveness endpoints answer without a key.
PUBLIC_PATHS = frozenset(
    {"/ping", "/ping/db", "/analytics/legacy/ping", "/analytics/legacy/ping/db", "/status",
     "/oauth/token"}
)
OAUTH_TOKEN = "edgestats.usage_billing.v1.OAuthService.IssueToken"
HTTP_VERBS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_PATH_VARIABLE = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")

_F = FieldDescriptor
_SCALARS: dict[int, Schema] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _F.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    # The transcoder prints 64-bit integers as JSON strings.
    _F.TYPE_INT64: {"type": "string", "format": "int64"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_UINT64: {"type": "string", "format": "int64"},
    _F.TYPE_FIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WRAPPERS = frozenset(
    f"google.protobuf.{name}"
    for name in (
        "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value",
        "UInt32Value", "BoolValue", "StringValue", "BytesValue",
    )
)  # fmt: skip
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Value": {"nullable": True},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
}


def _obj(properties: dict[str, Schema], required: list[str]) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


_STRING: Schema = {"type": "string"}
_ERROR_SCHEMAS: dict[str, Schema] = {
    "ValidationError": _obj(
        {
            "detail": {
                "type": "array",
                "items": _obj(
                    {
                        "loc": {"type": "array", "items": _STRING},
                        "msg": _STRING,
                        "type": _STRING,
                        "ctx": {"type": "object"},
                    },
                    ["loc", "msg", "type"],
                ),
            }
        },
        ["detail"],
    ),
    "NotAuthenticated": _obj({"type": _STRING, "title": _STRING}, ["type", "title"]),
    "Forbidden": _obj({"type": _STRING, "title": _STRING}, ["type", "title"]),
    "NotFound": _obj({"detail": _STRING}, ["detail"]),
    "ServiceUnavailable": _obj({"detail": _STRING}, ["detail"]),
    "OAuthError": _obj({"error": _STRING, "error_description": _STRING}, ["error"]),
}
# status -> (component name, description); components.responses and .schemas share the name.
_ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "400": ("ValidationError", "Invalid parameters or body: one entry per failing field."),
    "401": ("NotAuthenticated", "Missing or invalid API key."),
    "403": ("Forbidden", "The key's customer may not use this endpoint or resource."),
    "404": ("NotFound", "Unknown path or resource."),
    "503": ("ServiceUnavailable", "The database cannot be reached."),
}
# The token endpoint speaks RFC 6749 (§4.4 request, §5.2 errors), not CONTRACT §9.
_OAUTH_ERROR = ("OAuthError", "RFC 6749 §5.2: invalid_request or unsupported_grant_type"
                " (400), invalid_client (401).")
_OAUTH_ERRORS: dict[str, tuple[str, str]] = {
    "400": _OAUTH_ERROR, "401": _OAUTH_ERROR, "503": _ERROR_RESPONSES["503"],
}
_OAUTH_FORM: Schema = {
    "required": True,
    "content": {"application/x-www-form-urlencoded": {"schema": _obj({
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": _STRING, "client_secret": _STRING, "scope": _STRING,
    }, ["grant_type"])}},
}


def _comment_text(location: descriptor_pb2.SourceCodeInfo.Location) -> str:
    """The leading comment of a location, else its trailing one, with lines stripped."""
    raw = location.leading_comments or location.trailing_comments
    return "\n".join(line.strip() for line in raw.strip().splitlines())


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _walk_message(
    msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source path, full name) of a message, its fields, nested messages and enums."""
    name = _join(scope, msg.name)
    yield path, name
    for i, field in enumerate(msg.field):
        yield (*path, 2, i), f"{name}.{field.name}"
    for i, nested in enumerate(msg.nested_type):
        yield from _walk_message(nested, (*path, 3, i), name)
    for i, enum in enumerate(msg.enum_type):
        yield (*path, 4, i), _join(name, enum.name)


def _walk_file(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source path, full name) of every commented element of a file."""
    for i, msg in enumerate(file.message_type):
        yield from _walk_message(msg, (4, i), file.package)
    for i, enum in enumerate(file.enum_type):
        yield (5, i), _join(file.package, enum.name)
    for i, service in enumerate(file.service):
        name = _join(file.package, service.name)
        yield (6, i), name
        for j, method in enumerate(service.method):
            yield (6, i, 2, j), f"{name}.{method.name}"


def _comments(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """Full element name -> its comment, from the files' source_code_info."""
    out: dict[str, str] = {}
    for file in files:
        locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
        for path, name in _walk_file(file):
            location = locations.get(path)
            if location is not None and (text := _comment_text(location)):
                out[name] = text
    return out


def _described(schema: Schema, description: str | None) -> Schema:
    """`schema` with a description, unless it is a bare $ref (siblings would be ignored)."""
    if description and "$ref" not in schema:
        return {**schema, "description": description}
    return schema


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _path_template(path: str) -> tuple[str, list[str]]:
    """OpenAPI path and its parameter names for an http rule template (`{x=...}` -> `{x}`)."""
    names = [m.group(1) for m in _PATH_VARIABLE.finditer(path)]
    return _PATH_VARIABLE.sub(lambda m: "{" + m.group(1) + "}", path), names


def _bindings(rule: Message) -> list[tuple[str, str, str]]:
    """(verb, path, body) of the primary binding then of each additional binding."""
    out = []
    for binding in [rule, *rule.additional_bindings]:
        kind = binding.WhichOneof("pattern")
        if kind is None:
            continue
        if kind == "custom":
            verb, path = binding.custom.kind.lower(), binding.custom.path
        else:
            verb, path = kind, getattr(binding, kind)
        if verb not in HTTP_VERBS:
            raise ValueError(f"unsupported HTTP verb {verb!r} for {path}")
        out.append((verb, path, binding.body))
    return out


class _MethodOptions:
    """Reads the http rule and json_response of methods, resolving the extensions in `pool`.

    The options are re-parsed with a MethodOptions class of the descriptor set's own pool, which
    knows both extensions, so no generated module needs to be importable.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        options = pool.FindMessageTypeByName("google.protobuf.MethodOptions")
        self._cls = message_factory.GetMessageClass(options)
        self._http = pool.FindExtensionByName(HTTP_RULE_EXTENSION)
        try:
            self._json = pool.FindExtensionByName(JSON_RESPONSE_EXTENSION)
        except KeyError:
            self._json = None

    def read(self, method: MethodDescriptor) -> tuple[Message | None, Message | None]:
        """(HttpRule or None, JsonResponse or None) of `method`."""
        opts = self._cls.FromString(method.GetOptions().SerializeToString())
        rule = opts.Extensions[self._http] if opts.HasExtension(self._http) else None
        has_json = self._json is not None and opts.HasExtension(self._json)
        return rule, (opts.Extensions[self._json] if has_json else None)


class _Builder:
    """Accumulates paths and component schemas while walking the services."""

    def __init__(self, pool: descriptor_pool.DescriptorPool, comments: dict[str, str]) -> None:
        self.pool = pool
        self.comments = comments
        self.options = _MethodOptions(pool)
        self.schemas: dict[str, Schema] = {}
        self.paths: dict[str, dict[str, Schema]] = {}
        self.operation_ids: set[str] = set()
        # request message -> fields some binding takes from the path; the gateway never reads
        # them from the query string (ignored_query_parameters), so they are not query params
        self.path_only: dict[str, set[str]] = {}

    # -- schemas ----------------------------------------------------------------------------

    def message_ref(self, msg: Descriptor) -> Schema:
        """Schema of a message field value: inline for well-known types, else a $ref."""
        if msg.full_name in _WRAPPERS:
            return {**self.scalar(msg.fields_by_name["value"]), "nullable": True}
        if msg.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[msg.full_name])
        if msg.full_name not in self.schemas:
            self.schemas[msg.full_name] = {}  # placeholder: recursive messages stop here
            self.schemas[msg.full_name] = self.message_schema(msg)
        return {"$ref": f"#/components/schemas/{msg.full_name}"}

    def message_schema(self, msg: Descriptor) -> Schema:
        """Object schema of a message; JSON names are the proto field names."""
        schema: Schema = {"type": "object"}
        if msg.fields:
            schema["properties"] = {f.name: self.field_schema(f) for f in msg.fields}
        return _described(schema, self.comments.get(msg.full_name))

    def scalar(self, field: FieldDescriptor) -> Schema:
        """Schema of one value of a non-message field."""
        if field.type == _F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS[field.type])

    def value_schema(self, field: FieldDescriptor) -> Schema:
        """Schema of one value of `field`, ignoring `repeated`."""
        if field.message_type is not None:
            return self.message_ref(field.message_type)
        return self.scalar(field)

    def field_schema(self, field: FieldDescriptor) -> Schema:
        """Schema of a field: maps are objects, repeated fields arrays."""
        if _is_map(field):
            value = self.value_schema(field.message_type.fields_by_name["value"])
            schema: Schema = {"type": "object", "additionalProperties": value}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value_schema(field)}
        else:
            schema = self.value_schema(field)
        return _described(schema, self.comments.get(field.full_name))

    def named_ref(self, full_name: str) -> Schema:
        """message_ref of a message given by fully qualified name."""
        return self.message_ref(self.pool.FindMessageTypeByName(full_name.lstrip(".")))

    # -- operations -------------------------------------------------------------------------

    def parameter(self, field: FieldDescriptor | None, name: str, where: str) -> Schema:
        """A path (required string) or query (optional) parameter."""
        param: Schema = {"name": name, "in": where}
        if where == "path":
            param["required"] = True
            param["schema"] = {"type": "string"}
        else:
            schema = self.field_schema(field)
            drop = {"description", "nullable"}  # the description goes on the parameter
            param["schema"] = {k: v for k, v in schema.items() if k not in drop}
        if field is not None and (text := self.comments.get(field.full_name)):
            param["description"] = text
        return param

    def query_fields(
        self, request: Descriptor, path_params: list[str], body: str, path_only: set[str]
    ) -> list:
        """Request fields the transcoder reads from the query string."""
        if body == "*" or request.full_name == HTTP_BODY:
            return []
        fields = []
        for field in request.fields:
            skip = field.name in path_params or field.name in path_only or field.name == body
            if skip or _is_map(field):
                continue
            msg = field.message_type
            if msg is None or msg.full_name in _WRAPPERS or msg.full_name in _WELL_KNOWN:
                fields.append(field)
        return fields

    def parameters(
        self, request: Descriptor, path_params: list[str], body: str, path_only: set[str]
    ) -> list:
        """Path parameters, then the query parameters of the remaining request fields."""
        fields = request.fields_by_name
        params = [self.parameter(fields.get(name), name, "path") for name in path_params]
        params += [
            self.parameter(f, f.name, "query")
            for f in self.query_fields(request, path_params, body, path_only)
        ]
        return params

    def request_body(self, request: Descriptor, body: str) -> Schema | None:
        """requestBody of a binding, or None when it has no body."""
        if not body:
            return None
        if request.full_name == HTTP_BODY:
            content = {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            }
        elif body == "*":
            content = {"application/json": {"schema": self.message_ref(request)}}
        else:
            schema = self.field_schema(request.fields_by_name[body])
            content = {"application/json": {"schema": schema}}
        return {"required": True, "content": content}

    def json_response(self, option: Message) -> tuple[str, Schema]:
        """(content type, schema) documented by an `edgestats.api.v1.json_response` option."""
        content_type = option.content_type or "application/json"
        if content_type.startswith("text/"):
            return content_type, {"type": "string"}
        if not option.message:
            return content_type, {}
        schema = self.named_ref(option.message)
        if option.array:
            schema = {"type": "array", "items": schema}
        if option.alternative:
            alternative = {
                "type": "array",
                "items": self.named_ref(option.alternative),
                "minItems": 1,
                "maxItems": 1,
            }
            # anyOf, not oneOf: proto3 messages have no required fields, so a JSON element
            # of one shape also validates against the other.
            schema = {"anyOf": [schema, alternative]}
        return content_type, schema

    def responses(self, method: MethodDescriptor, option: Message | None) -> Schema:
        """The 200 answer and the documented error answers."""
        output = method.output_type
        if output.full_name != HTTP_BODY:
            content_type, schema = "application/json", self.message_ref(output)
        elif option is not None:
            content_type, schema = self.json_response(option)
        else:
            content_type, schema = "application/json", {}
        ok = {"description": "OK", "content": {content_type: {"schema": schema}}}
        documented = _OAUTH_ERRORS if method.full_name == OAUTH_TOKEN else _ERROR_RESPONSES
        errors = {
            status: {"$ref": f"#/components/responses/{name}"}
            for status, (name, _) in documented.items()
        }
        return {"200": ok, **errors}

    def note_path_params(self, method: MethodDescriptor) -> None:
        """Record which request fields `method` binds to path segments."""
        rule, _ = self.options.read(method)
        if rule is None:
            return
        names = self.path_only.setdefault(method.input_type.full_name, set())
        for _, template, _ in _bindings(rule):
            names.update(_path_template(template)[1])

    def add_method(self, service: ServiceDescriptor, method: MethodDescriptor) -> None:
        """Add one operation per binding of `method`'s http rule."""
        rule, option = self.options.read(method)
        if rule is None:
            return
        path_only = self.path_only.get(method.input_type.full_name, set())
        for n, (verb, template, body) in enumerate(_bindings(rule)):
            path, path_params = _path_template(template)
            op_id = f"{tag_name(service)}_{method.name}" + (f"_{n}" if n else "")
            if op_id in self.operation_ids:
                raise ValueError(f"duplicate operationId {op_id}")
            self.operation_ids.add(op_id)
            item = self.paths.setdefault(path, {})
            if verb in item:
                raise ValueError(f"{verb.upper()} {path} is bound twice")
            op: Schema = {"tags": [tag_name(service)], "operationId": op_id}
            item[verb] = op
            if comment := self.comments.get(method.full_name):
                op["summary"] = comment.splitlines()[0]
                if comment != op["summary"]:
                    op["description"] = comment
            if params := self.parameters(method.input_type, path_params, body, path_only):
                op["parameters"] = params
            request_body = self.request_body(method.input_type, body)
            if method.full_name == OAUTH_TOKEN:
                request_body = _OAUTH_FORM
            if request_body is not None:
                op["requestBody"] = request_body
            op["responses"] = self.responses(method, option)
            if path in PUBLIC_PATHS:
                op["security"] = []


def _load(descriptor_set_bytes: bytes) -> tuple[descriptor_pool.DescriptorPool, list]:
    """A fresh pool holding every file of the set, and the set's files."""
    files = list(descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_bytes).file)
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    return pool, files


def _document(builder: _Builder, tags: list[Schema]) -> Schema:
    """The document around the collected paths and schemas, in a deterministic order."""
    schemas = dict(sorted(builder.schemas.items()))
    documented = dict([*_ERROR_RESPONSES.values(), _OAUTH_ERROR])
    schemas.update({name: _ERROR_SCHEMAS[name] for name in documented})
    responses = {
        name: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
        for name, text in documented.items()
    }
    paths = {path: dict(sorted(item.items())) for path, item in sorted(builder.paths.items())}
    return {
        "openapi": "3.0.3",
        "info": {"title": "edgestats API", "version": "1.0.0"},
        "servers": [{"url": "/"}],
        "tags": sorted(tags, key=lambda t: t["name"]),
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def tag_name(service: ServiceDescriptor) -> str:
    """The OpenAPI tag of a JSON service: its name without `Json` (`MetricsJsonService` is
    the gRPC name of the HTTP surface documented as `MetricsService`)."""
    return service.name.replace("JsonService", "Service")


def build_openapi(descriptor_set_bytes: bytes) -> dict:
    """The OpenAPI 3.0.3 document of every `edgestats.*` service in a FileDescriptorSet."""
    pool, files = _load(descriptor_set_bytes)
    builder = _Builder(pool, _comments(files))
    services = [
        pool.FindServiceByName(_join(file.package, service_proto.name))
        for file in files
        if file.package.startswith(PACKAGE_PREFIX)
        for service_proto in file.service
    ]
    for service in services:
        for method in service.methods:
            builder.note_path_params(method)
    tags = []
    for service in services:
        if not any(builder.options.read(m)[0] for m in service.methods):
            continue  # a typed gRPC service: not on the HTTP surface
        tags.append(_described({"name": tag_name(service)},
                               builder.comments.get(service.full_name)))
        for method in service.methods:
            builder.add_method(service, method)
    return _document(builder, tags)


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m edgestats_stack.openapi <descriptor.binpb> <out.json>`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    document = build_openapi(Path(args[0]).read_bytes())
    out = Path(args[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
