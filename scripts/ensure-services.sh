#!/usr/bin/env bash
# Make sure Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer; start them if not.
set -u
wait_for() {  # command, what
  for _ in $(seq 1 100); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "o16n: $2 did not come up" >&2
  return 1
}
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "o16n: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for "pg_isready -h 127.0.0.1 -p 5432 -q" PostgreSQL || exit 1
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  echo "o16n: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  wait_for "redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG" Redis || exit 1
fi
