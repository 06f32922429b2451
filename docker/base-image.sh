#!/usr/bin/env bash
# The base image for machines that cannot pull Flower's images: Debian bookworm from debootstrap (Python 3.11,
# as the lock), then the locked environment in /python/venv and /app, both owned by user `app` (the image's user),
# laid out as Flower's own images are, so the one Dockerfile builds on either base. Each step is skipped when its
# image exists.
#
# The lock is installed here, by `docker run` + `docker commit`, and not in the Dockerfile, because it needs
# this machine's pip configuration (CA bundle, index mirrors, local wheel folders), which the legacy builder
# cannot bind-mount: they are mounted read-only for this one container and stay out of the image.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DEBIAN_IMAGE="${DEBIAN_IMAGE:-fedleak-debian:bookworm}"

debian_image() {
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    # A machine whose package lists were never fetched needs an update first (docker/engine.sh does one only
    # when it installs the engine).
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q debootstrap >/var/tmp/fedleak-apt.log 2>&1 \
      || { timeout 600 apt-get update -q >/var/tmp/fedleak-apt.log 2>&1 \
           && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q debootstrap >/var/tmp/fedleak-apt.log 2>&1; } \
      || die "apt-get install debootstrap failed: $(tail -n 1 /var/tmp/fedleak-apt.log)"
  }
  local root; root="$(mktemp -d /var/tmp/fedleak-debootstrap.XXXXXX)"
  say "debootstrap bookworm into $root (one to a few minutes)"
  if ! timeout 900 debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$root" >"$root.log" 2>&1; then
    rm -rf "$root"
    die "debootstrap failed: $(tail -n 1 "$root.log")"
  fi
  tar -C "$root" -c . | docker import - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
  say "imported $DEBIAN_IMAGE"
}

# `docker run` flags that give a container this machine's pip configuration: every config file pip reads and
# every local path a setting names (cert, constraint, find-links, file:// indexes), read-only at the same path,
# plus the PIP_* environment.
pip_mounts() {
  local pip="$REPO/.venv/bin/pip" path
  [[ -x "$pip" ]] || pip="python3 -m pip"
  {
    $pip config debug 2>/dev/null | sed -n 's/^ *\(\/[^,]*\), exists: True$/\1/p'
    # A file:// index's pages link to files next to its simple/ folder: mount the folder above it.
    $pip config list 2>/dev/null | sed "s/^[^=]*='\(.*\)'$/\1/" | tr ' ' '\n' \
      | sed -e 's|^file://||' -e 's|/simple/*$||'
  } | sort -u | while read -r path; do
    [[ "$path" == /* && -e "$path" ]] && printf -- '-v\n%s:%s:ro\n' "$path" "$path"
  done
  env | grep '^PIP_' | while read -r var; do printf -- '-e\n%s\n' "$var"; done
}

locked_base() {
  docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 && return 0
  debian_image
  local mounts name="fedleak-base-build-$$"
  mapfile -t mounts < <(pip_mounts)
  say "installing requirements.lock into $LOCAL_BASE (a few minutes: torch and its CUDA libraries)"
  # --network host: pip reaches the package registry as this machine does (dockerd runs without a bridge).
  if ! timeout 1800 docker run --name "$name" --network host "${mounts[@]}" \
      -v "$REPO/requirements.lock:/tmp/requirements.lock:ro" "$DEBIAN_IMAGE" /bin/sh -euc '
        python3 -m venv /python/venv
        /python/venv/bin/python -m pip install -q --no-cache-dir -r /tmp/requirements.lock
        useradd --create-home --uid 49999 app
        mkdir -p /app && chown -R app:app /app /python' >"/var/tmp/$name.log" 2>&1; then
    docker rm -f "$name" >/dev/null 2>&1 || true
    die "installing the lock into the base failed: $(grep -v -e '^ *$' -e '^WARNING' "/var/tmp/$name.log" | tail -n 1)"
  fi
  docker commit --change 'ENV PATH=/python/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'USER app' --change 'WORKDIR /app' "$name" "$LOCAL_BASE" >/dev/null
  docker rm "$name" >/dev/null
  rm -f "/var/tmp/$name.log"
  say "built $LOCAL_BASE"
}

locked_base
