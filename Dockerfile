# One image for every process of the order-fulfillment sample; the command picks the role:
#   orchestrator | participant inventory|payment|shipping|notification | ...
# and `python -m participants seed` loads the demo data. A team's own image copies its
# app instead of participants/ and schemas/ and sets SAGA_APP=module:object.
#
# BASE_IMAGE is python:3.11-slim where a registry answers; `make images` builds FROM a
# Debian bookworm base made from Debian's packages (Python 3.11 is bookworm's python3)
# with PIP_OFFLINE=1, installing from the wheels it put in docker/wheels.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/saga/bin:$PATH \
    SAGA_HEALTH_HOST=0.0.0.0 \
    SAGA_HEALTH_PORT=8080

RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/saga \
    && useradd --create-home --uid 10001 saga

WORKDIR /app
ARG PIP_OFFLINE=
COPY docker/wheels/ /tmp/wheels/
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY saga_worker ./saga_worker
COPY participants ./participants
# A regular (non-editable) install of the library; the sample app (participants/,
# schemas/) is imported from the working directory, /app.
RUN pip install ${PIP_OFFLINE:+--no-index --find-links /tmp/wheels} . \
    && rm -rf /tmp/wheels /app/build /app/*.egg-info /app/saga_worker

USER saga
EXPOSE 8080

# Liveness of the worker's loops; /readyz would also fail during a rebalance.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ['SAGA_HEALTH_PORT'], timeout=2)"

ENTRYPOINT ["saga-worker"]
CMD ["--help"]
