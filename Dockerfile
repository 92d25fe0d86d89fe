# syntax=docker/dockerfile:1.7
# One image for every onair service. The entry point is the `onair` CLI, so the command picks
# what runs: `serve <name>` (a service, port ONAIR_PORT=8000) or `migrate <name>` (its database,
# then exit). `docker build --target load` gives the Locust image (same code, plus locust).
#
# Writable paths (everything else may be mounted read-only: k8s readOnlyRootFilesystem, compose
# read_only), each owned by uid 10001 in the image and mounted as emptyDir / volume / tmpfs:
#   /tmp                         temporary files (tempfile)
#   /var/lib/onair/spool         ONAIR_SPOOL_DIR: log events the broker has not taken yet
#   /var/cache/onair/numba       NUMBA_CACHE_DIR: compiled pprof kernels (profstore), warmed below
#   /var/lib/onair/state         state kept across restarts where no Secret provides it (compose:
#                                the gateway's identity key, ONAIR_GATEWAY_STATE_DIR)
ARG PYTHON_VERSION=3.11

# --- common base: the runtime user and the writable directories ---------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
# HOME=/tmp: nothing under the read-only root is anyone's home; a library that writes a dot-file
# there writes it to the writable /tmp.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    PATH=/opt/onair/bin:$PATH
RUN groupadd --system --gid 10001 onair \
 && useradd --system --uid 10001 --gid onair --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin onair \
 && install -d -o onair -g onair -m 0750 /var/lib/onair/spool /var/lib/onair/state /var/cache/onair/numba

# --- build: compilers live here only; the result is one virtualenv in /opt/onair ----------------
FROM base AS build
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends build-essential
RUN python -m venv /opt/onair
WORKDIR /src
# Dependencies first (from pyproject.toml alone), so a code change does not reinstall them.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY platform platform
COPY services services
RUN pip install --no-deps . && pip check

# Locust and its dependencies, for the `load` target only.
FROM build AS build-load
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['load']))" \
        > /tmp/load-requirements.txt \
 && pip install -r /tmp/load-requirements.txt

# --- load: Locust with onair installed (docker compose --profile load) ---------------------------
FROM base AS load
COPY --from=build-load /opt/onair /opt/onair
COPY --chown=onair:onair load /opt/onair-load
USER 10001:10001
WORKDIR /opt/onair-load
EXPOSE 8089 5557
ENTRYPOINT ["locust"]
CMD ["-f", "/opt/onair-load/locustfile.py"]

# --- runtime (the default target): no compilers, no pip cache, non-root -------------------------
FROM base AS runtime
COPY --from=build /opt/onair /opt/onair
USER 10001:10001
# Relative paths (defaults meant for a checkout, e.g. .onair/...) land in the writable /tmp.
WORKDIR /tmp
ENV ONAIR_HOST=0.0.0.0 \
    ONAIR_PORT=8000 \
    ONAIR_SPOOL_DIR=/var/lib/onair/spool \
    NUMBA_CACHE_DIR=/var/cache/onair/numba
# Compile the pprof kernels once at build time (~10 s) so profstore loads them in ~0.3 s. numba
# recompiles by itself when a node's CPU differs from the build machine's. Under a read-only root
# the cache directory is a volume: k8s seeds it from this copy (profstore's init container),
# Docker copies it into a fresh volume by itself.
RUN python -c "from onair.pgo import pprof; pprof.warm_up()"
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ONAIR_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["onair"]
CMD ["--help"]
