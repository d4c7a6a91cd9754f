"""The rendered Envoy configuration: the settings issue #8 relies on are where Envoy reads
them (Envoy itself loads it in every end-to-end test)."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgestats_stack import gateway
from edgestats_stack.stack import GEN


def render(**settings) -> dict:
    text = gateway.render(host="127.0.0.1", port=8080, admin_port=9901,
                          service_ports={s.cluster: [50051] for s in gateway.SERVICES},
                          descriptor=GEN / "edgestats.binpb", openapi_json=GEN / "openapi.json",
                          **settings)
    return yaml.safe_load(text)


def test_envoy_heap_is_bounded_by_the_overload_manager():
    overload = render(max_heap_mb=256)["overload_manager"]
    [monitor] = overload["resource_monitors"]
    assert monitor["typed_config"]["max_heap_size_bytes"] == 256 * 1024 * 1024
    thresholds = {a["name"]: a["triggers"][0]["threshold"]["value"] for a in overload["actions"]}
    assert thresholds == {"envoy.overload_actions.shrink_heap": 0.90,
                          "envoy.overload_actions.stop_accepting_requests": 0.95}


def test_the_access_log_goes_where_the_stack_says():
    config = render(access_log=Path("/tmp/x/envoy-access.log"))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    [log] = manager["typed_config"]["access_log"]
    assert log["typed_config"]["path"] == "/tmp/x/envoy-access.log"
    assert "path" not in log["typed_config"]["log_format"]["json_format"]  # no URL logged
