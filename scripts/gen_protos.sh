#!/usr/bin/env bash
# Generates gen/: Python stubs, the descriptor set Envoy transcodes with, and
# the OpenAPI document derived from it. Nothing in gen/ is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$PWD/.venv/bin/python}

rm -rf gen && mkdir -p gen .run/proto-deps/google/api
site=$("$PY" -c 'import google.api.annotations_pb2 as a, os; print(os.path.dirname(os.path.dirname(os.path.dirname(a.__file__))))')
cp "$site"/google/api/{annotations,http,httpbody}.proto .run/proto-deps/google/api/

mapfile -t protos < <(cd protos && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd protos && "$PY" -m grpc_tools.protoc -I . -I ../.run/proto-deps \
  --python_out=../gen --pyi_out=../gen --grpc_python_out=../gen \
  --include_imports --include_source_info --descriptor_set_out=../gen/edgestats.binpb \
  "${protos[@]}")

# the generated packages and our services on the venv's path, for the `edgestats` command
purelib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD/gen" "$PWD/services" > "$purelib/edgestats_paths.pth"

PYTHONPATH="$PWD/services:$PWD/gen" "$PY" -m edgestats_stack.openapi gen/edgestats.binpb gen/openapi.json
