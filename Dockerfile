# One image for every role; the command picks it:
#
#   docker build -t webhooks-outbox .
#   docker run --rm -e DATABASE_URL=... webhooks-outbox migrate
#   docker run -e DATABASE_URL=... -e REDIS_URL=... webhooks-outbox relay
#   docker run -e DATABASE_URL=... -e REDIS_URL=... webhooks-outbox            # worker
#   docker run -e DATABASE_URL=... -e REDIS_URL=... -p 8080:8080 webhooks-outbox api --host 0.0.0.0
#
# BuildKit (Docker's default builder since 23.0) is needed for the RUN --mount below.
# No HEALTHCHECK: each role serves its probes on a port of its own (worker 9191, relay 9192,
# api 8080) and `migrate` serves none; the orchestrator probes /healthz and /readyz
# (deploy/kubernetes/).
ARG PYTHON_VERSION=3.12

# -- build: the project's wheel from this checkout, and wheels of everything it needs -------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY producers/ producers/
COPY schema/ schema/
COPY worker/ worker/
RUN pip wheel --wheel-dir /wheels '.[api]'

# -- runtime: the wheels installed, no compiler, no source, no pip cache ---------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Installed from the build stage's wheels only: the runtime stage reaches no package index,
# and the versions are the ones the build stage resolved (hence no pins here).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'webhooks-outbox[api]'
# The uid and gid the Kubernetes manifests run as (runAsUser: 10001).
RUN groupadd --system --gid 10001 webhooks \
    && useradd --system --uid 10001 --gid webhooks --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin webhooks
USER 10001:10001
# worker /metrics, relay /metrics, api
EXPOSE 9191 9192 8080
ENTRYPOINT ["webhooks"]
CMD ["worker"]
