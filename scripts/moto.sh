#!/usr/bin/env bash
# A LocalStack-compatible AWS endpoint without Docker: moto's server, installed from PyPI
# into the project's own virtual environment (.venv), on 127.0.0.1:4566.
#
#   scripts/moto.sh start     install if needed, start in the background, wait until it answers
#   scripts/moto.sh stop      stop the server this script started
#   scripts/moto.sh status    exit 0 when it answers
#   scripts/moto.sh install   only install into .venv
#   scripts/moto.sh env       print the variables the AWS tests use (eval "$(scripts/moto.sh env)")
#
# Idempotent: `start` on a running server does nothing, `stop` on a stopped one neither.
# Environment: MOTO_PORT (4566), MOTO_HOST (127.0.0.1), MOTO_VERSION (pinned below),
# PYTHON (python3).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
host="${MOTO_HOST:-127.0.0.1}"
port="${MOTO_PORT:-4566}"
version="${MOTO_VERSION:-5.2.5}"
python="${PYTHON:-python3}"
state="$root/target/moto"
pidfile="$state/moto-$port.pid"
logfile="$state/moto-$port.log"
url="http://$host:$port"

answers() {
  # moto answers GET /moto-api/ with its dashboard data; any HTTP answer will do.
  "$venv/bin/python" - "$url" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

install() {
  if [[ -x "$venv/bin/moto_server" ]] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
    return 0
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "moto: creating $venv" >&2
    "$python" -m venv "$venv"
  fi
  echo "moto: installing moto[server]==$version into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version" boto3
}

start() {
  install
  mkdir -p "$state"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers; then
    echo "moto: already running at $url (pid $(cat "$pidfile"))" >&2
    return 0
  fi
  if answers; then
    echo "moto: something already answers at $url; using it" >&2
    return 0
  fi
  echo "moto: starting at $url (log: $logfile)" >&2
  # setsid: the server must outlive this script and not get the caller's signals.
  # Our wrapper of moto_server: DynamoDB writes serialized (see scripts/moto_server.py).
  setsid "$venv/bin/python" "$root/scripts/moto_server.py" -H "$host" -p "$port" >"$logfile" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 60); do
    if answers; then
      echo "moto: ready" >&2
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "moto: the server exited; log follows" >&2
      cat "$logfile" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "moto: no answer from $url after 30 s; log follows" >&2
  cat "$logfile" >&2
  return 1
}

stop() {
  if [[ ! -f "$pidfile" ]]; then
    echo "moto: not started by this script" >&2
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    echo "moto: stopped (pid $pid)" >&2
  fi
  rm -f "$pidfile"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) [[ -x "$venv/bin/python" ]] && answers ;;
  install) install ;;
  env)
    echo "export MIR_TEST_AWS_ENDPOINT=$url"
    echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
    ;;
  *)
    echo "usage: $0 start|stop|status|install|env" >&2
    exit 2
    ;;
esac
