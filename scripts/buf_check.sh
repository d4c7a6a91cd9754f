#!/usr/bin/env bash
# buf lint, and buf breaking against the protos of a git ref (default: main).
# The against image is built with protoc from `git archive`, because the buf
# registry (for googleapis) is out of reach: the deps come from .run/proto-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=.run/npm/node_modules/.bin/buf
ref=${BUF_AGAINST:-}
if [ -z "$ref" ]; then  # a CI clone may only have origin/main
  for candidate in main origin/main; do
    if git rev-parse --verify -q "$candidate^{commit}" >/dev/null; then ref=$candidate; break; fi
  done
fi

"$buf" lint
echo; echo "buf lint: ok"

if [ -z "$ref" ] || ! git rev-parse --verify -q "$ref^{commit}" >/dev/null; then
  echo "buf breaking: no main branch to compare with, skipped"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$ref" protos | tar -x -C "$tmp"
mapfile -t files < <(cd "$tmp/protos" && find . -name '*.proto' | sed 's|^\./||' | sort)
.venv/bin/python -m grpc_tools.protoc -I "$tmp/protos" -I .run/proto-deps \
  --include_imports --include_source_info --descriptor_set_out="$tmp/against.binpb" \
  $(printf "$tmp/protos/%s " "${files[@]}")
# compare like with like: the current descriptor set, built the same way by gen_protos.sh
"$buf" breaking gen/edgestats.binpb --against "$tmp/against.binpb"
echo "buf breaking against $ref: ok"
