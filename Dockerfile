# syntax=docker/dockerfile:1
# The Sticktionary image: its entrypoint is the `sticktionary` command, so every subcommand runs in it
# (run, jobs start, export serve, db upgrade, …). docker-compose.yml builds and uses it.
#
#   docker build -t sticktionary:local .
#   docker run --rm --env-file .env -v sticktionary-data:/data sticktionary:local db upgrade
#
# The dependencies are requirements/base.txt, every file checked against the lock's sha256, installed by
# requirements/install: the same script and the same lock that .ci/run installs the tests' environment
# with (tests/test_container.py holds the two together). The heavy `semantic` extra (torch) is not in
# the image; the README's "Container image" section says how to add it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in their own layer: a change to the code alone does not reinstall them.
COPY requirements/ requirements/
RUN sh requirements/install /venv requirements/base.txt
COPY . .
RUN /venv/bin/pip install --no-deps --no-build-isolation .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sticktionary" \
      org.opencontainers.image.description="A Telegram game that collects sticker search queries" \
      org.opencontainers.image.licenses="MIT"
# The stickers, the exports and the media cache live under /data (compose mounts a volume on each);
# relative defaults (the SQLite file var/sticktionary.sqlite3) resolve there too.
RUN groupadd --system --gid 10001 sticktionary \
    && useradd --system --uid 10001 --gid sticktionary --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin sticktionary \
    && mkdir -p /data/stickers /data/exports /data/media-cache \
    && chown -R sticktionary:sticktionary /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STICKTIONARY_STICKER_ROOT=/data/stickers \
    STICKTIONARY_EXPORT_DIR=/data/exports \
    STICKTIONARY_MEDIA_CACHE=/data/media-cache
WORKDIR /data
USER 10001:10001
# The webhook server (STICKTIONARY_WEBHOOK_LISTEN), the researchers' pull server (export serve) and the
# health and metrics listener of `run` and `jobs start` (STICKTIONARY_HEALTH_LISTEN, as compose sets it).
EXPOSE 8443 8080 9090
ENTRYPOINT ["sticktionary"]
CMD ["run"]
