#!/usr/bin/env bash
# Install (if missing) and start the services the `redis` profile and the tests use, bound to 127.0.0.1.
# Idempotent: `up` twice is fine; `down` stops only what `up` started (by pid file).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${PROPENSITY_SERVICES_HOME:-$PWD/var/services}"
REDIS_PORT="${REDIS_PORT:-6379}"
mkdir -p "$STATE/redis"

redis_up() {
  if ! command -v redis-server >/dev/null; then
    echo "installing redis-server from Debian packages"
    if [ "$(id -u)" -ne 0 ]; then echo "redis-server is missing and installing it needs root: sudo apt-get install redis-server"; exit 1; fi
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq redis-server >/dev/null
  fi
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "redis: already up on 127.0.0.1:$REDIS_PORT"; return
  fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" --daemonize yes \
    --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" --save "" --appendonly no
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && { echo "redis: up on 127.0.0.1:$REDIS_PORT"; return; }
    sleep 0.1
  done
  echo "redis did not answer on 127.0.0.1:$REDIS_PORT within 5 s; see $STATE/redis/redis.log"; exit 1
}

redis_down() {
  if [ -f "$STATE/redis/redis.pid" ]; then
    kill "$(cat "$STATE/redis/redis.pid")" 2>/dev/null || true
    rm -f "$STATE/redis/redis.pid"
    echo "redis: stopped"
  else
    echo "redis: not started by us"
  fi
}

case "${1:-up}" in
  up) redis_up ;;
  down) redis_down ;;
  *) echo "usage: $0 up|down"; exit 2 ;;
esac
