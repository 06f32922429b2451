#!/usr/bin/env bash
# `make compose-test`: the hospitals federation in containers, end to end, on loopback.
#
# Starts a Docker engine of its own (docker/engine.sh; installs Debian's docker.io when missing) and Compose v2
# (docker/compose-install.sh), builds the debootstrap base (docker/base-image.sh) and the fedleak image on it
# (cached images are reused), brings up docker-compose.yml's SuperLink, ServerApp SuperExec and one SuperNode +
# ClientApp SuperExec per client of SCENARIO, runs the scenario with `flwr run`, copies the run directory out of
# the `runs` volume into runs/compose-test-<time>/, runs the same scenario with `fedleak deploy` as processes, and
# checks the run (docker/check_run.py). Whatever happens (an error, Ctrl-C, a container that dies), the trap
# takes the federation down (`docker compose down -v`) and stops the dockerd this script started.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/common.sh"
cd "$REPO"
SCENARIO="${COMPOSE_SCENARIO:-scenarios/hospitals_pair.yaml}"
TIMEOUT_S="${COMPOSE_TEST_TIMEOUT:-1200}"   # for the run itself, once the containers are up
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || die "$PY is missing: run 'make test' (or any target that creates .venv) first"
CLIENTS="$("$PY" -c 'import sys; from fedleak.drivers.scenarios import load_scenario as s
print(s(sys.argv[1]).clients.count)' "$SCENARIO")" || die "cannot read $SCENARIO"
(( CLIENTS <= 5 )) || die "$SCENARIO has $CLIENTS clients; docker-compose.yml has 5 SuperNodes"
SERVICES=(superlink serverapp)
for ((i = 0; i < CLIENTS; i++)); do SERVICES+=("supernode-$i" "clientapp-$i"); done
export FEDLEAK_PARTITIONS="$CLIENTS" FEDLEAK_BASE_IMAGE="$LOCAL_BASE"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$REPO/runs/compose-test-$STAMP"
RUN_NAME="$(basename "$SCENARIO" .yaml)-$STAMP"
started_engine=0 up=0 up_once="" flwr_pid="" flwr_home=""

step() { say "$1 ($(( SECONDS / 60 ))m$(( SECONDS % 60 ))s)"; }

# One line naming the first service whose container is not running, with its last log line; nothing when all are.
dead_service() {
  local service state code last
  while read -r service state code; do
    [[ "$state" == running ]] && continue
    last="$(docker compose logs --no-log-prefix --tail 20 "$service" 2>&1 | grep -v '^[[:space:]]*$' | tail -n 1)"
    echo "$service is $state (exit code $code); its last log line: ${last:-(none)}"
    return
  done < <(docker compose ps -a --format '{{.Service}} {{.State}} {{.ExitCode}}' "${SERVICES[@]}")
}

save_logs() {  # every container's log into the run's logs/, before `down` removes the containers
  local service
  mkdir -p "$OUT/logs"
  for service in "${SERVICES[@]}"; do
    setsid -w docker compose logs --no-log-prefix "$service" >"$OUT/logs/$service.log" 2>&1 </dev/null
  done
}

# The trap. A second Ctrl-C must not leave the federation half down: the shell ignores it from here on, and the
# teardown commands run in a session of their own, out of the terminal's reach (docker re-enables SIGINT itself).
cleanup() {
  local rc=$?
  trap '' INT TERM
  trap - EXIT
  if [[ -n "$flwr_pid" ]] && kill -0 "$flwr_pid" 2>/dev/null; then kill -TERM -- "-$flwr_pid" 2>/dev/null || true; fi
  if (( up )); then
    save_logs || true
    setsid -w timeout 180 docker compose down -v --timeout 10 >/dev/null 2>&1 </dev/null \
      || say "docker compose down failed"
  fi
  if [[ -n "$flwr_home" ]]; then rm -rf "$flwr_home"; fi
  if (( started_engine )); then setsid -w "$here/engine.sh" stop </dev/null; fi
  if (( rc != 0 )); then say "failed (exit $rc)${up_once:+; logs in $OUT/logs}"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

step "engine"
if ! docker version >/dev/null 2>&1; then "$here/engine.sh" start; started_engine=1; fi
"$here/compose-install.sh"
step "base image $LOCAL_BASE"
"$here/base-image.sh"
step "image $IMAGE"
# The legacy builder (Debian's engine has no buildx); on the cached lock layer a code change rebuilds in seconds.
timeout 1800 docker build -q --force-rm --network host -t "$IMAGE" \
  --build-arg "BASE_IMAGE=$LOCAL_BASE" --build-arg "FLWR_VERSION=$FLWR_VERSION" . \
  >/dev/null 2>"/var/tmp/fedleak-build.log" \
  || die "docker build failed: $(grep -v '^ *$' /var/tmp/fedleak-build.log | tail -n 1)"
docker image prune -f >/dev/null  # the image this build replaced (this engine holds nothing else)

# Host networking: the federation's ports must be free on this machine.
# SO_REUSEADDR, as the servers bind: a port whose last connections linger in TIME_WAIT is free.
taken="$("$PY" - "$CLIENTS" <<'PYEOF'
import socket, sys
for port in [8000, *range(9094, 9094 + int(sys.argv[1]))]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            print(port, end=" ")
PYEOF
)"
[[ -z "$taken" ]] || die "docker-compose.yml's services listen on 127.0.0.1 ports that are taken here: $taken"
step "up: ${SERVICES[*]}"
up=1 up_once=1
timeout 300 docker compose up -d --no-build --wait "${SERVICES[@]}" >/dev/null 2>&1 \
  || die "docker compose up failed: $(dead_service)"

step "flwr run $SCENARIO"
flwr_home="$(mktemp -d)"
printf '[superlink]\ndefault = "docker"\n\n[superlink.docker]\naddress = "127.0.0.1:8000"\ninsecure = true\n' \
  >"$flwr_home/config.toml"
mkdir -p "$OUT/logs"
# Its own session: Ctrl-C reaches this script, whose trap then stops it along with everything else.
FLWR_HOME="$flwr_home" FLWR_TELEMETRY_ENABLED=0 setsid "$REPO/.venv/bin/flwr" run "$REPO" docker --stream \
  --run-config "scenario=\"$SCENARIO\" out=\"/app/runs/$RUN_NAME\" executor=\"local\"" \
  >"$OUT/logs/flwr-run.log" 2>&1 </dev/null &
flwr_pid=$!
deadline=$(( SECONDS + TIMEOUT_S ))
while kill -0 "$flwr_pid" 2>/dev/null; do
  dead="$(dead_service)"
  [[ -z "$dead" ]] || die "$dead"
  (( SECONDS < deadline )) || die "the run did not end within $TIMEOUT_S s; see $OUT/logs"
  sleep 3
done
wait "$flwr_pid" || die "flwr run exited with code $?: $(grep -v '^ *$' "$OUT/logs/flwr-run.log" | tail -n 1)"
flwr_pid=""

step "copy the run directory out of the runs volume"
volume="$(docker volume inspect -f '{{.Mountpoint}}' fedleak_runs)"
[[ -d "$volume/$RUN_NAME" ]] || die "the runs volume holds no $RUN_NAME: $(dead_service)"
cp -a "$volume/$RUN_NAME/." "$OUT/"
step "down"
save_logs
timeout 180 docker compose down -v --timeout 10 >/dev/null 2>&1 || die "docker compose down failed"
up=0
if (( started_engine )); then "$here/engine.sh" stop; started_engine=0; fi  # not needed from here on

step "fedleak deploy $SCENARIO (the reference, as processes)"
timeout 900 "$REPO/.venv/bin/fedleak" deploy "$SCENARIO" --out "$OUT/reference" >"$OUT/logs/deploy.log" 2>&1 \
  || die "fedleak deploy failed: $(tail -n 1 "$OUT/logs/deploy.log")"
step "check $OUT"
"$PY" "$here/check_run.py" "$OUT" "$SCENARIO" "$OUT/reference"
step "done"
