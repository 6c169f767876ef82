# syntax=docker/dockerfile:1.7
# Two images from one file:
#   docker build --target operator -t aigc-edge-operator .   (no torch: kopf, onnxruntime, prometheus client)
#   docker build --target worker   -t aigc-edge-worker .     (CUDA runtime, torch, diffusers)
# Build for edge boards with --platform linux/arm64 (Jetson: use a JetPack base via WORKER_BASE).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG WORKER_BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY policy ./policy
COPY operator ./operator
COPY sd-worker ./sd-worker
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS operator
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/*.whl)[operator]" && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin aigc
USER 10001
EXPOSE 8080 9100
ENTRYPOINT ["aigc-edge", "operator"]

FROM ${WORKER_BASE} AS worker
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive
# Package versions follow the pinned CUDA base image's release, so they are not pinned twice.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
RUN python3.11 -m pip install --no-cache-dir "$(ls /wheels/*.whl)[worker,gpu]" && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin aigc
USER 10001
EXPOSE 9200
ENTRYPOINT ["aigc-edge", "worker", "run"]
