#!/usr/bin/env bash
# Installs the system packages edgestats needs when they are missing:
# PostgreSQL 15 with the hll, tdigest and pg_partman extensions and redis-server
# (the CeleryExecutor's broker) from Debian, and the buf CLI from npm into
# .run/npm. Needs root (or sudo) only to install.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_ext_dir=/usr/share/postgresql/15/extension
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15 postgresql-client-15)
[ -f $pg_ext_dir/hll.control ] || need+=(postgresql-15-hll)
[ -f $pg_ext_dir/tdigest.control ] || need+=(postgresql-15-tdigest)
[ -f $pg_ext_dir/pg_partman.control ] || need+=(postgresql-15-partman)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v npm >/dev/null || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .run/npm/node_modules/.bin/buf ]; then
  mkdir -p .run/npm
  npm install --silent --prefix .run/npm @bufbuild/buf@1.75.0 >/dev/null
fi
