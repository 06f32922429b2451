# One image for every SuperExec of docker-compose.yml: Flower's official SuperExec image plus fedleak and exactly the
# tested versions of its dependencies (requirements.lock). The ServerApp's and the ClientApps' code is this installed
# package (the FAB that `flwr run` sends carries pyproject.toml and scenarios/ only; see fedleak/deploy_app.py).
# FLWR_VERSION must equal the flwr pinned in requirements.lock (tests/test_deploy.py checks it).
ARG FLWR_VERSION=1.42.0
ARG PYTHON_TAG=py3.11-ubuntu24.04
FROM flwr/superexec:${FLWR_VERSION}-${PYTHON_TAG}

WORKDIR /app
COPY --chown=app:app requirements.lock pyproject.toml README.md ./
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

ENTRYPOINT ["flower-superexec"]
