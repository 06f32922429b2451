# One image for every service of docker-compose.yml: the SuperLink, the SuperNodes and the SuperExecs all run
# Flower's own console scripts from one environment holding exactly the tested versions (requirements.lock) and
# fedleak. The ServerApp's and the ClientApps' code is this installed package (the FAB that `flwr run` sends
# carries pyproject.toml and scenarios/ only; see fedleak/drivers/deploy_app.py).
#
# BASE_IMAGE, either:
# - Flower's official SuperExec image (the default; needs Docker Hub): Python in /python/venv, user `app`, /app;
# - fedleak-base:bookworm-<lock hash> for machines that cannot pull it (docker/base-image.sh: Debian bookworm from
#   debootstrap with the same layout and the lock already installed, so the pip step below has nothing to fetch).
# FLWR_VERSION must equal the flwr pinned in requirements.lock (tests/test_deploy.py checks it).
ARG FLWR_VERSION=1.42.0
ARG PYTHON_TAG=py3.11-ubuntu24.04
ARG BASE_IMAGE=flwr/superexec:${FLWR_VERSION}-${PYTHON_TAG}
FROM ${BASE_IMAGE}

WORKDIR /app
COPY --chown=app:app requirements.lock pyproject.toml README.md LICENSE ./
# The lock first, in its own layer, so a code change does not reinstall torch. The lock holds the CUDA build of
# torch that fedleak is tested with; it also runs on CPU.
RUN python -m pip install --no-cache-dir -r requirements.lock
COPY --chown=app:app fedleak fedleak
COPY --chown=app:app clients clients
COPY --chown=app:app server server
COPY --chown=app:app attacks attacks
COPY --chown=app:app scenarios scenarios
RUN python -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && mkdir -p /app/runs

# SuperExec by default; docker-compose.yml sets flower-superlink / flower-supernode as the entrypoint of those.
ENTRYPOINT ["flower-superexec"]
