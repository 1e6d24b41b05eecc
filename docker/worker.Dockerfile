# syntax=docker/dockerfile:1
#
# wanserve GPU worker: Celery + the resident Wan2.2 model (model/, worker/) on a CUDA build of PyTorch.
#
#   docker build -f docker/worker.Dockerfile -t wanserve-worker .
#   docker build -f docker/worker.Dockerfile --build-arg TORCH_VERSION=2.13.0 \
#       --build-arg TORCH_INDEX_URL=<a PyTorch CUDA wheel index> -t wanserve-worker .
#
# Checkpoints are NOT baked in: they live in the volume mounted at /models (WANSERVE_MODEL_PATH points
# a worker at one folder there);
# see README "Downloading the official checkpoints".

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE}
# PyPI's Linux x86_64 torch wheels are CUDA builds; set TORCH_INDEX_URL to pin a specific CUDA flavour.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
LABEL org.opencontainers.image.title="wanserve-worker" \
      org.opencontainers.image.description="wanserve Celery GPU worker serving one Wan2.2 model" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
# The torch layer first: it is the large one and changes least often.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX_URL"; \
    else \
      pip install "torch==${TORCH_VERSION}"; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY model ./model
RUN pip install ".[worker]" "torch==${TORCH_VERSION}" \
 && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

COPY docker/healthcheck.py /usr/local/lib/wanserve/healthcheck.py
RUN groupadd --system --gid 10001 wanserve \
 && useradd --system --uid 10001 --gid wanserve --home-dir /var/lib/wanserve --shell /usr/sbin/nologin wanserve \
 && mkdir -p /var/lib/wanserve /models \
 && chown wanserve:wanserve /var/lib/wanserve /models
ENV WANSERVE_DATA_DIR=/var/lib/wanserve \
    HF_HOME=/models/huggingface
# The model cache (official checkpoints, text encoder, VAE) survives container rebuilds.
VOLUME ["/models"]
USER wanserve:wanserve
WORKDIR /var/lib/wanserve
# Healthy while this worker's heartbeat entry lives in Redis (it expires WANSERVE_WORKER_TTL_S after
# the last heartbeat); the long start period covers loading the checkpoints.
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
  CMD ["python", "/usr/local/lib/wanserve/healthcheck.py", "worker"]
# The worker id defaults to the container hostname, so `docker compose --scale` gives unique ids.
CMD ["sh", "-c", "export WANSERVE_WORKER_ID=\"${WANSERVE_WORKER_ID:-$(hostname)}\"; exec wanserve worker"]
