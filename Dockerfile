# syntax=docker/dockerfile:1
# freeapi in a container: `docker build -t freeapi .` then
#   docker run -d -p 8000:8000 -v freeapi-data:/data --name freeapi freeapi
# (README: Docker). The install step is the same `pip install .` the README's first
# command runs and CI tests. CI builds and runs this file with podman
# (tests/e2e/container_e2e.py); with podman, build with `--format docker`, or the OCI
# format drops the HEALTHCHECK.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY setup.py README.md ./
COPY freeapi ./freeapi
COPY providers ./providers
# With the postgres extra (asyncpg), so `state.database_url` works in the image too.
RUN python3 -m venv /opt/freeapi && /opt/freeapi/bin/pip install .[postgres]

FROM python:3.11-slim
ENV PATH=/opt/freeapi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/freeapi /opt/freeapi
COPY deploy/container.yaml /etc/freeapi/config.yaml
# A numeric, non-root user in group 0, and state dirs owned by group 0 and group-writable:
# the image also runs under an arbitrary UID (OpenShift, runAsUser), which is always in
# group 0, and Kubernetes' runAsNonRoot can verify a numeric USER.
RUN mkdir -p /data && chown 10001:0 /data && chmod 2775 /data \
    && chmod -R g=u /etc/freeapi
VOLUME ["/data"]
WORKDIR /data
USER 10001:0
EXPOSE 8000
# The slim image has no curl: Python asks /ping (no gateway key needed) on the port the
# server was started on (its --port, else its config's server.port, else 8000), so a
# container run on another port is not reported unhealthy. -P: nothing in /data (the
# working directory) shadows a module.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-P", "-m", "freeapi.healthcheck"]
# SIGTERM drains: /healthz answers 503 while requests in flight finish (server.shutdown_grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["freeapi"]
CMD ["--config", "/etc/freeapi/config.yaml"]
