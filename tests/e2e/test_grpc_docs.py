"""The `buf curl` examples of docs/grpc.md run against the gateway as written (host, key and
the example's dates aside) and answer what the page says."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta

import pytest

from edgestats_stack.stack import REPO
from tests.builders import v1_scenario, wire

pytestmark = pytest.mark.e2e

DOC = REPO / "docs" / "grpc.md"
BUF = REPO / ".run" / "npm" / "node_modules" / ".bin" / "buf"
# the example range of the page, moved to the tests' clock
EXAMPLE_FROM, EXAMPLE_TO = "2026-12-04T23:00:00Z", "2026-12-05T00:00:00Z"


def examples() -> list[str]:
    """Every `buf curl` command of the page's shell blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for command in re.split(r"(?<!\\)\n", block):
            command = command.replace("\\\n", "").strip()  # as the shell reads it
            if command.startswith("buf curl"):
                commands.append(command)
    return commands


def test_the_page_has_examples():
    assert len(examples()) >= 3


@pytest.mark.parametrize("command", examples())
def test_an_example_runs(api, stack, tenants, frozen_now, command):
    customer_id, key = tenants.customer("advanced")
    api.ingest(key, [wire(b) for b in v1_scenario(customer_id, frozen_now, seed=61)])
    assert BUF.exists(), "buf is installed by `make setup`"
    end = frozen_now.replace(minute=frozen_now.minute // 15 * 15, second=0, microsecond=0)
    start = end - timedelta(hours=1)
    moved = {EXAMPLE_FROM: start.strftime("%Y-%m-%dT%H:%M:%SZ"),
             EXAMPLE_TO: end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    line = re.sub("|".join(map(re.escape, moved)), lambda m: moved[m.group(0)],
                  command.replace("buf curl", str(BUF) + " curl", 1)
                  .replace("http://127.0.0.1:8080", stack.http_url))  # one pass: no chains
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          env={"KEY": key, "PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert done.returncode == 0, (line, done.stderr)
    if "--list-services" in command:
        listed = done.stdout.split()
        assert "edgestats.metrics.v1.MetricsService" in listed
        assert "grpc.health.v1.Health" in listed
        return
    answer = json.loads(done.stdout)
    if "Health/Check" in command:
        assert answer == {"status": "SERVING"}
    elif "GetAudience" in command:
        assert len(answer["rows"]) == 4  # an hour of 15-minute buckets
        assert sum(int(row.get("audience", 0)) for row in answer["rows"]) > 0
    else:
        pytest.fail(f"no expectation for {command}")
