#!/usr/bin/env bash
# Quick start: a local etcd, the sample LabWorkers, and the controller converging them.
# Installs Debian's etcd-server and a venv on first run. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
if [ ! -x .venv/bin/labctl ]; then
    "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
export PATH="$PWD/.venv/bin:$PATH"

# A private etcd for the demo on its own port (Debian's service may already own 2379).
PORT="${DEMO_ETCD_PORT:-23791}"
DATA="$(mktemp -d -t labctl-demo-etcd.XXXXXX)"
etcd --name demo --data-dir "$DATA" \
     --listen-client-urls "http://127.0.0.1:$PORT" --advertise-client-urls "http://127.0.0.1:$PORT" \
     --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" \
     --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
     --initial-cluster "demo=http://127.0.0.1:$((PORT + 1))" --log-level error --logger zap \
     >"$DATA.log" 2>&1 &
ETCD_PID=$!
cleanup() { kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"; }
trap cleanup EXIT

export ETCD_ENDPOINTS="127.0.0.1:$PORT"
export LAB_SIM_DELAY="${LAB_SIM_DELAY:-1}"
export LOG_FORMAT="${LOG_FORMAT:-console}"
export METRICS_PORT="${METRICS_PORT:-8080}" HEALTH_PORT="${HEALTH_PORT:-8081}"
for _ in $(seq 100); do etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

labctl apply -f manifests/samples/
echo "--- starting the controller; in another terminal: ETCD_ENDPOINTS=$ETCD_ENDPOINTS .venv/bin/labctl get labworkers -A -o wide"
labctl run &
CTRL_PID=$!
trap 'kill -TERM "$CTRL_PID" 2>/dev/null || true; wait "$CTRL_PID" 2>/dev/null || true; cleanup' EXIT
labctl wait --all -n default --for=phase=Ready --timeout=120s >/dev/null && labctl get labworkers -A -o wide
wait "$CTRL_PID"
