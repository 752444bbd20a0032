#!/usr/bin/env bash
# From a fresh clone on Debian 12 (root): host packages, npm dependencies, then the default lab.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "quickstart: run as root (sudo): it installs Debian packages and creates network namespaces" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
command -v node >/dev/null || { echo "quickstart: Node.js 20+ is required (apt-get install nodejs npm)" >&2; exit 2; }
npm ci --no-audit --no-fund
apt-get update -qq
./bin/lab.js doctor --fix --group lab
exec ./bin/lab.js up "$@"
