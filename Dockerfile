# syntax=docker/dockerfile:1
# One image for every switchboard service: the command picks the service, e.g.
#   docker run switchboard switchboard.router
#   docker run switchboard switchboard topics
# It installs only the service distribution (pyproject.toml) and requirements/runtime.lock. The load generator and the
# benchmarks are the tools distribution (tools/pyproject.toml, with matplotlib and tqdm; requirements/tools.lock);
# they get their own stage, `loadtest`:
#   docker build --target loadtest -t switchboard-loadtest .
#   docker run switchboard-loadtest switchboard_tools.loadgen
# The service image (`runtime`) is the last stage, so a plain `docker build .` builds it.

# --- builder: a venv with the pinned runtime dependencies and the package ---------------------------------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies get their own layer so that editing the code does not reinstall them. requirements/runtime.lock
# pins the services' dependencies (pyproject.toml) and nothing else, each with its hashes: pip refuses any file
# whose hash the lock does not list, and any dependency the lock does not pin (README, "Dependencies").
COPY pyproject.toml ./
COPY requirements/runtime.lock ./requirements/
RUN pip install --require-hashes --requirement requirements/runtime.lock

# Only the package: config (tenants, rosters, routing) and every secret come from mounts and the environment at
# run time (docker-compose.yml mounts ./config, Kubernetes mounts ConfigMaps and Secrets), never from the image.
COPY services ./services
# Not editable: the final stage copies only /opt/venv, so the package must live inside it. The package data
# (the router's Lua scripts, py.typed, …; pyproject.toml [tool.setuptools.package-data]) is installed with it;
# the check fails the build when a data file the services read at run time did not make it into the venv.
RUN pip install --no-deps . \
 && site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
 && cd services \
 && for f in $(find switchboard -type f \( -name '*.lua' -o -name '*.yaml' -o -name 'py.typed' \)); do \
        test -f "$site/$f" || { echo "package data not installed: $f" >&2; exit 1; }; \
    done

# --- tools-builder: the same venv plus the tools distribution and its dependencies (load test only) -------------
# requirements/tools.lock = runtime.lock's pins plus the tools' (matplotlib, tqdm, ...), hash-checked the same way.
FROM builder AS tools-builder
COPY requirements/tools.lock ./requirements/
RUN pip install --require-hashes --requirement requirements/tools.lock
COPY tools ./tools
RUN pip install --no-deps ./tools

# --- loadtest: the load generator's image (docker-compose.yml `loadgen`, components/loadtest), never a service --
FROM python:3.11-slim AS loadtest

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY --from=tools-builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["python", "-m"]
CMD ["switchboard_tools", "--help"]

# --- pages: the agent desk and supervisor board (web/, TypeScript bundled by esbuild; packages from its lock) -----
FROM node:20-slim AS pages
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/build.mjs web/tsconfig.json ./
COPY web/src ./src
RUN ./node_modules/.bin/tsc --noEmit && node build.mjs

# --- runtime: the venv on a clean slim image, as a non-root user -----------------------------------------------
# Same base as the builder, so the venv's python symlink points at the same interpreter.
FROM python:3.11-slim AS runtime

# The commit the image is built from, for sb_build_info's revision label (docs/metrics.md):
#   docker build --build-arg SB_BUILD_REVISION=$(git rev-parse --short HEAD) .
ARG SB_BUILD_REVISION=unknown

# The root filesystem is read-only in Kubernetes; pip already compiled the bytecode in the builder.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SB_HTTP_PORT=8080 \
    SB_PAGES_DIR=/opt/switchboard/pages \
    SB_BUILD_REVISION=$SB_BUILD_REVISION

COPY --from=builder /opt/venv /opt/venv
# Static files only the gateway serves (/desk/, /board/); nothing is fetched at run time.
COPY --from=pages /web/dist /opt/switchboard/pages

# A numeric user, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# Exec form: no shell at runtime, and SIGTERM reaches python directly for the graceful shutdown.
ENTRYPOINT ["python", "-m"]
CMD ["switchboard", "--help"]
