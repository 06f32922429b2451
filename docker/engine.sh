#!/usr/bin/env bash
# Start or stop the Docker engine the compose test uses: `engine.sh start` installs Debian's docker.io when no
# dockerd is on this machine and starts one of its own; `engine.sh stop` stops that dockerd by its pid.
# Networking stays on loopback: no bridge, no iptables rules; every container uses the host's network.
set -euo pipefail
source "$(dirname "$0")/common.sh"
PIDFILE="$FEDLEAK_DOCKER_RUN/dockerd.pid"
LOG="$FEDLEAK_DOCKER_RUN/dockerd.log"

running_pid() {  # the pid of our dockerd when it is alive, else nothing
  [[ -f "$PIDFILE" ]] || return 0
  local pid; pid="$(cat "$PIDFILE")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -qa dockerd "/proc/$pid/cmdline"; then echo "$pid"; fi
}

start() {
  [[ "$(id -u)" == 0 ]] || die "the Docker engine needs root (dockerd and apt-get); run as root"
  if ! command -v dockerd >/dev/null; then
    say "installing Debian's docker.io (engine, containerd, runc)"
    export DEBIAN_FRONTEND=noninteractive
    local log=/var/tmp/fedleak-apt.log
    timeout 600 apt-get update -q >"$log" 2>&1 || die "apt-get update failed: $(tail -n 1 "$log")"
    timeout 900 apt-get install -y -q --no-install-recommends docker.io >"$log" 2>&1 \
      || die "apt-get install docker.io failed: $(tail -n 1 "$log")"
  fi
  mkdir -p "$FEDLEAK_DOCKER_DATA" "$FEDLEAK_DOCKER_RUN"
  if [[ -n "$(running_pid)" ]]; then say "dockerd already running (pid $(running_pid))"; return 0; fi
  # setsid: Ctrl-C in the terminal reaches the test script, which then stops dockerd itself, in order.
  setsid dockerd --data-root "$FEDLEAK_DOCKER_DATA" --exec-root "$FEDLEAK_DOCKER_RUN/exec" \
    --pidfile "$PIDFILE" --host "$DOCKER_HOST" --bridge=none --iptables=false --ip6tables=false \
    >"$LOG" 2>&1 < /dev/null &
  local launched=$!
  for _ in $(seq 1 120); do
    if docker version >/dev/null 2>&1; then
      say "dockerd $(docker version -f '{{.Server.Version}}') running (pid $(running_pid))," \
        "data in $FEDLEAK_DOCKER_DATA"
      return 0
    fi
    kill -0 "$launched" 2>/dev/null || die "dockerd could not start: $(tail -n 1 "$LOG")"
    sleep 0.5
  done
  kill "$launched" 2>/dev/null || true
  die "dockerd did not answer within 60 s: $(tail -n 1 "$LOG")"
}

stop() {
  local pid; pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    kill -TERM "$pid"
    # dockerd stops its containers and its own containerd before it exits (up to its shutdown timeout).
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      say "dockerd ignored SIGTERM for 30 s: killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
    else
      say "dockerd stopped"
    fi
  fi
  unmount_leftovers
}

# dockerd can leave its data-root bind mount and its network namespace mounted after it exits; unmount them
# (deepest first), so the folders can be removed and nothing of the engine stays behind.
unmount_leftovers() {
  local target
  for target in $(awk -v a="$FEDLEAK_DOCKER_DATA" -v b="$FEDLEAK_DOCKER_RUN" \
      'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || say "could not unmount $target"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
