#!/usr/bin/env bash
# Install R from Debian's packages when it is missing. `required` fails when it cannot;
# `optional` (make run) warns and lets o16n start with Python only (/status says so).
set -u
mode=${1:-required}
if command -v R >/dev/null 2>&1 && [ -f "$(R RHOME 2>/dev/null)/include/R.h" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "o16n: installing R (r-base-core r-base-dev) from Debian packages..."
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core r-base-dev >/dev/null; then
    exit 0
  fi
fi
if [ "$mode" = required ]; then
  echo "o16n: R is required for the tests: install r-base-core and r-base-dev" >&2
  exit 1
fi
echo "o16n: R is not installed and cannot be installed here; starting with the Python runtime only" >&2
exit 0
