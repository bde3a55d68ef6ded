# syntax=docker/dockerfile:1
# The socd container image, the one the Helm chart (deploy/helm/socd) runs.
#
#   docker build -t ghcr.io/<org>/socd:0.1.0 .
#   docker run --rm ghcr.io/<org>/socd:0.1.0            # the embedded demo (sample data)
#   docker run --rm -v $PWD/socd.yaml:/etc/socd/socd.yaml:ro ghcr.io/<org>/socd:0.1.0 \
#       run -c /etc/socd/socd.yaml
#
# Base image: the official Python image, pinned by tag (Python 3.11 on Debian 12). For a
# reproducible build also pin its digest, which CI resolves where a registry is reachable
# (`docker buildx imagetools inspect python:3.11-slim-bookworm`):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# Both stages use the same base, so the virtualenv built in the first one runs unchanged
# in the second.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/socd
# Only what `pip install .` needs (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY socd ./socd
COPY collectors ./collectors
COPY alerting ./alerting
COPY rules ./rules
# Every dependency ships wheels for CPython 3.11 on glibc (amd64, arm64): no compiler.
# The bytecode is compiled here because the runtime root filesystem is read-only.
RUN /opt/socd/bin/pip install --no-cache-dir --prefer-binary ".[geoip]" \
    && /opt/socd/bin/python -m compileall -q /opt/socd/lib \
    && /opt/socd/bin/socd --version

# -------------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime
ARG SOCD_UID=10001
LABEL org.opencontainers.image.title="socd" \
      org.opencontainers.image.description="Security-operations monitoring daemon for a provincial SOC" \
      org.opencontainers.image.licenses="Apache-2.0"
# libpcap: the network sensor compiles bpf_filter with it (nothing else is added).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${SOCD_UID}" socd \
    && useradd --system --uid "${SOCD_UID}" --gid socd --no-create-home \
        --home-dir /var/lib/socd --shell /usr/sbin/nologin socd \
    && mkdir -p /etc/socd /var/lib/socd \
    && chown socd:socd /var/lib/socd \
    && chmod 0750 /var/lib/socd
COPY --from=build /opt/socd /opt/socd
ENV PATH=/opt/socd/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STATE_DIRECTORY=/var/lib/socd
VOLUME ["/var/lib/socd"]
WORKDIR /var/lib/socd
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 9797
STOPSIGNAL SIGTERM
# For plain Docker (Kubernetes uses the chart's probes): the embedded default and the
# chart both serve /healthz on port 9797, reachable on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9797/healthz', timeout=4)"]
ENTRYPOINT ["socd"]
CMD ["run"]
