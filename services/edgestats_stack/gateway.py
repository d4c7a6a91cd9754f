"""Renders gateway/envoy.yaml for given ports and paths, and the /analytics/docs/ routes."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

import swagger_ui_bundle

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


def _endpoints(ports: list[int]) -> str:
    """One lb_endpoint per service process (Envoy balances round robin)."""
    return "\n".join(
        "        - endpoint: {address: {socket_address: {address: 127.0.0.1, "
        f"port_value: {port}}}}}}}"
        for port in ports
    )


def render(
    *, host: str, port: int, admin_port: int, metrics_ports: list[int], descriptor: Path,
    openapi_json: Path,
) -> str:
    template = Template((GATEWAY_DIR / "envoy.yaml").read_text())
    return template.substitute(
        host=host,
        port=port,
        admin_port=admin_port,
        metrics_endpoints=_endpoints(metrics_ports),
        descriptor=str(descriptor),
        gateway_dir=str(GATEWAY_DIR),
        docs_routes=_docs_routes(openapi_json),
    )
