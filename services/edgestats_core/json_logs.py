"""One JSON line per log event in every service (structlog over the standard logging).

Each line has `timestamp` (UTC, ISO-8601), `level`, `service` (the process's name),
`event` and, inside a call, the call's `method`, `request_id` (the gateway's
`x-request-id`, also in its access log), `trace_id` and `principal` (an id such as
`customer:c-1`, never a key or token). The interceptor writes one `answered` line per call
with its gRPC code and milliseconds. Nothing logs SQL text or values.
"""

from __future__ import annotations

import logging
import sys

import structlog

bind = structlog.contextvars.bind_contextvars  # adds keys to this call's lines
clear = structlog.contextvars.clear_contextvars


def configure(service: str, level: int = logging.INFO) -> None:
    """Route every logger of the process to stderr as JSON lines naming `service`."""
    def add_service(_, __, event: dict) -> dict:
        event.setdefault("service", service)
        return event

    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_service,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
