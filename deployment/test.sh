#!/usr/bin/env bash
# Install what the tests need (Debian's etcd-server, a venv with the project and its test
# extras), then run the whole suite: pytest (unit, integration on real etcd, e2e), mypy, ruff.
# Safe to re-run; used verbatim by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null || ! command -v openssl >/dev/null \
    || ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client openssl >/dev/null
    # prometheus + promtool: the alert rules' unit tests and the dashboard/alert query e2e.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The Debian packages start a system etcd on :2379 and Prometheus on :9090; tests use their
# own on free ports.

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

export PATH="$PWD/.venv/bin:$PATH"
echo "== mypy --strict controller"
mypy --strict controller
echo "== ruff check"
ruff check controller tests bench
echo "== pytest"
# Most tests wait on etcd, moto or a controller process, not on the CPU: four workers keep
# the suite within minutes on two cores (PYTEST_WORKERS=0 runs it serially); work stealing
# keeps the long e2e tests from queueing behind each other on one worker.
exec python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-4}" --dist worksteal "$@"
