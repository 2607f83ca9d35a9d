# syntax=docker/dockerfile:1
#
# Lab Resource Controller image.
#
#   docker build -t lab-resource-controller:0.1.0 .
#   docker run --rm -e ETCD_ENDPOINTS=etcd:2379 -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 lab-resource-controller:0.1.0
#
# Two stages on the same base image: the builder installs the project into a venv, the runtime
# stage copies only that venv. Same base = same interpreter path, so the venv's python symlink
# stays valid, and nothing used only to build (wheel caches, sources) reaches the final image.
# tests/unit/test_deploy_static.py and tests/e2e/test_dockerfile_commands.py read this file:
# keep every builder-stage RUN runnable outside Docker (no apt-get) and the venv at /opt/venv.

FROM python:3.11-slim-bookworm AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv

WORKDIR /src
# Only what the wheel is built from (pyproject.toml reads README.md as the long description)
# and the lock of every dependency's exact version.
COPY pyproject.toml README.md requirements.lock ./
COPY controller ./controller

# requirements.lock pins every runtime dependency, transitive ones too: the image is rebuilt
# from the same packages, not whatever is newest that day. All ship manylinux wheels for
# CPython 3.11 (grpcio, pydantic-core, protobuf), so no compiler is needed here either.
RUN /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock .


FROM python:3.11-slim-bookworm AS runtime

ARG VERSION=0.1.0
# Pass --build-arg SOURCE_URL=$(git remote get-url origin) --build-arg REVISION=$(git rev-parse HEAD).
ARG SOURCE_URL=""
ARG REVISION=""

LABEL org.opencontainers.image.title="lab-resource-controller" \
      org.opencontainers.image.description="Controller that reconciles LabWorker resources stored directly in etcd" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only under Kubernetes; pip already
# compiled the venv's bytecode in the builder.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A named account for the numeric UID, so tools that look up the user (ps, id) show a name.
RUN groupadd --system --gid 10001 labctl \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin labctl

COPY --from=builder /opt/venv /opt/venv

# Numeric so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# METRICS_PORT (/metrics) and HEALTH_PORT (/healthz, /readyz) defaults.
EXPOSE 8080 8081

# slim has no curl; the venv's python is on PATH. Follows HEALTH_PORT if it is overridden.
# Any non-2xx answer or connection error raises, and the non-zero exit marks the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTH_PORT', '8081'), timeout=4)"]

ENTRYPOINT ["labctl"]
CMD ["run"]
