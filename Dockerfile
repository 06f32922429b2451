# One image for every SuperExec of docker-compose.yml: Flower's official SuperExec image plus fedleak and its
# dependencies, installed from pyproject.toml. The ServerApp's and the ClientApps' code is this installed package
# (the FAB that `flwr run` sends carries pyproject.toml and scenarios/ only; see fedleak/deploy_app.py).
ARG FLWR_VERSION=1.41.0
ARG PYTHON_TAG=py3.11-ubuntu24.04
FROM flwr/superexec:${FLWR_VERSION}-${PYTHON_TAG}

# CPU wheels of torch/torchvision unless told otherwise (the default index serves the large CUDA build on Linux).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY --chown=app:app pyproject.toml README.md ./
COPY --chown=app:app fedleak fedleak
COPY --chown=app:app clients clients
COPY --chown=app:app server server
COPY --chown=app:app attacks attacks
COPY --chown=app:app scenarios scenarios
# The image already holds flwr ${FLWR_VERSION}, which satisfies pyproject's flwr pin, so pip keeps it.
RUN python -m pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" . \
    && mkdir -p /app/runs

ENTRYPOINT ["flower-superexec"]
