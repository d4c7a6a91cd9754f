"""Renders gateway/envoy.yaml for given ports and paths, and the /analytics/docs/ routes."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import swagger_ui_bundle

from edgestats_stack.services import SERVICES, ServiceSpec

REPO = Path(__file__).resolve().parents[2]
GATEWAY_DIR = REPO / "gateway"
DOCS_PREFIX = "/analytics/docs/"

# file served under /analytics/docs/ -> (source path, content type)
def docs_files(openapi_json: Path) -> dict[str, tuple[Path, str]]:
    ui = Path(swagger_ui_bundle.swagger_ui_path)
    return {
        "": (GATEWAY_DIR / "docs" / "index.html", "text/html; charset=utf-8"),
        "index.html": (GATEWAY_DIR / "docs" / "index.html", "text/html; charset=utf-8"),
        "openapi.json": (openapi_json, "application/json"),
        "swagger-ui.css": (ui / "swagger-ui.css", "text/css"),
        "swagger-ui-bundle.js": (ui / "swagger-ui-bundle.js", "application/javascript"),
        "swagger-ui-standalone-preset.js": (
            ui / "swagger-ui-standalone-preset.js", "application/javascript"
        ),
    }


def _docs_routes(openapi_json: Path) -> str:
    """Envoy routes answering the OpenAPI document and the Swagger UI page from files."""
    routes = [{
        "match": {"path": DOCS_PREFIX.rstrip("/")},
        "redirect": {"path_redirect": DOCS_PREFIX},
    }]
    for name, (path, content_type) in docs_files(openapi_json).items():
        routes.append({
            "match": {"path": DOCS_PREFIX + name},
            "direct_response": {"status": 200, "body": {"filename": str(path)}},
            "response_headers_to_add": [{
                "header": {"key": "content-type", "value": content_type},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }],
        })
    # JSON is YAML: one route per line at the routes list's indentation
    return "\n".join(f"              - {json.dumps(r)}" for r in routes)


def _grpc_routes(services: tuple[ServiceSpec, ...]) -> str:
    """Native gRPC (and transcoded) calls to each service's cluster; health and reflection
    through the gateway reach the first service."""
    routes = [
        {"match": {"prefix": f"/{name}/", "grpc": {}}, "route": _route(spec.cluster)}
        for spec in services for name in spec.grpc_services
    ]
    routes.append({"match": {"prefix": "/grpc.", "grpc": {}},
                   "route": _route(services[0].cluster)})
    return "\n".join(f"              - {json.dumps(r)}" for r in routes)


def _route(cluster: str) -> dict:
    """Timeout above the services' 30 s statement budget (so the service answers 504 itself);
    retries only where the call never reached a service (a worker restarting): safe for every
    RPC, and ingestion is idempotent anyway."""
    return {
        "cluster": cluster,
        "timeout": "35s",
        "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset",
            "num_retries": 2,
            "per_try_timeout": "35s",
        },
    }


def _cluster(name: str, ports: list[int], per_process: int) -> str:
    """A cluster of service processes (HTTP/2), balanced round robin."""
    options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": 16 * 1024 * 1024,
        "typed_extension_protocol_options": {
            options: {
                "@type": f"type.googleapis.com/{options}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        # admission: no more requests in flight than the processes serve at once
        # (EDGESTATS_MAX_CONCURRENT_RPCS each); past it Envoy answers 503 at once, without
        # waiting for a busy service, and nothing piles up (issue #8)
        "circuit_breakers": {"thresholds": [{
            "max_connections": 1024, "max_pending_requests": 64,
            "max_requests": per_process * len(ports), "max_retries": 8,
        }]},
        # a stopped worker is taken out of rotation within seconds (gRPC health service)
        "health_checks": [{
            "timeout": "1s", "interval": "2s", "unhealthy_threshold": 2, "healthy_threshold": 1,
            "grpc_health_check": {},
        }],
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                              "port_value": port}}}}
                for port in ports
            ]}],
        },
    }
    return f"  - {json.dumps(cluster)}"


def _tracing(otlp_endpoint: str | None) -> tuple[str, str]:
    """(the connection manager's tracing block, the collector's cluster) when traces are
    exported to `otlp_endpoint` (OTLP/gRPC, e.g. http://127.0.0.1:4317), else empty."""
    if not otlp_endpoint:
        return "", ""
    parsed = urlsplit(otlp_endpoint)
    tracing = {"provider": {
        "name": "envoy.tracers.opentelemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otel_collector"},
                             "timeout": "2s"},
            "service_name": "edgestats-gateway",
        }}}
    cluster = {
        "name": "otel_collector", "type": "STRICT_DNS", "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3"
                         ".HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "otel_collector", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": parsed.hostname or "127.0.0.1", "port_value": parsed.port or 4317,
            }}}}]}]},
    }
    return f"          tracing: {json.dumps(tracing)}\n", f"\n  - {json.dumps(cluster)}"


def render(
    *, host: str, port: int, admin_port: int, service_ports: dict[str, list[int]],
    descriptor: Path, openapi_json: Path, services: tuple[ServiceSpec, ...] = SERVICES,
    max_concurrent_rpcs: int = 16, access_log: Path = Path("/dev/null"),
    max_heap_mb: int = 1024, otlp_endpoint: str | None = None,
) -> str:
    """envoy.yaml for the given ports; `service_ports` maps each cluster to its processes;
    one JSON line per request goes to `access_log`; Envoy's heap budget is `max_heap_mb`;
    with `otlp_endpoint`, Envoy traces every request there (W3C traceparent in and out)."""
    tracing, collector = _tracing(otlp_endpoint)
    template = Template((GATEWAY_DIR / "envoy.yaml").read_text())
    return template.substitute(
        access_log=str(access_log),
        max_heap_bytes=max_heap_mb * 1024 * 1024,
        host=host,
        port=port,
        admin_port=admin_port,
        descriptor=str(descriptor),
        gateway_dir=str(GATEWAY_DIR),
        docs_routes=_docs_routes(openapi_json),
        grpc_routes=_grpc_routes(services),
        transcoded_services=json.dumps([n for spec in services for n in spec.grpc_services]),
        clusters="\n".join(_cluster(s.cluster, service_ports[s.cluster], max_concurrent_rpcs)
                            for s in services) + collector,
        tracing=tracing,
    )
