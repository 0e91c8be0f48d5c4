# One image for every process of the order-fulfillment sample; the command picks the role:
#   orchestrator | participant inventory|payment|shipping|notification | ...
# and `python -m participants seed` loads the demo data. A team's own image copies its
# app instead of participants/ and schemas/ and sets SAGA_APP=module:object.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAGA_HEALTH_HOST=0.0.0.0 \
    SAGA_HEALTH_PORT=8080

RUN useradd --create-home --uid 10001 saga

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY saga_worker ./saga_worker
COPY participants ./participants
# A regular (non-editable) install of the library; the sample app (participants/,
# schemas/) is imported from the working directory, /app.
RUN pip install . && rm -rf /app/build /app/*.egg-info /app/saga_worker

USER saga
EXPOSE 8080

# Liveness of the worker's loops; /readyz would also fail during a rebalance.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ['SAGA_HEALTH_PORT'], timeout=2)"

ENTRYPOINT ["saga-worker"]
CMD ["--help"]
