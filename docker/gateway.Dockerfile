# syntax=docker/dockerfile:1
#
# wanserve gateway: FastAPI + the torch-free shared contract (app/).
# Also runs the webhook-delivery Celery worker (queue `webhooks`), which needs no torch either.
#
#   docker build -f docker/gateway.Dockerfile -t wanserve-gateway .
#
# No PyTorch, no model code at run time: the image stays around 200 MB.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package build needs; tests, docs, weights and the model stay out (.dockerignore).
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY model ./model
# The base dependencies only: no `worker` extra, so no torch.
RUN pip install . && pip check

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="wanserve-gateway" \
      org.opencontainers.image.description="wanserve HTTP gateway (OpenAI /v1/videos compatible)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WANSERVE_HOST=0.0.0.0 \
    WANSERVE_PORT=8000 \
    WANSERVE_DATA_DIR=/var/lib/wanserve
RUN groupadd --system --gid 10001 wanserve \
 && useradd --system --uid 10001 --gid wanserve --home-dir /var/lib/wanserve --shell /usr/sbin/nologin wanserve \
 && mkdir -p /var/lib/wanserve \
 && chown wanserve:wanserve /var/lib/wanserve
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/lib/wanserve/healthcheck.py
USER wanserve:wanserve
WORKDIR /var/lib/wanserve
EXPOSE 8000
# /healthz answers while the process is up; /readyz (Redis + workers) is for load balancers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "/usr/local/lib/wanserve/healthcheck.py", "gateway"]
CMD ["wanserve", "gateway"]
