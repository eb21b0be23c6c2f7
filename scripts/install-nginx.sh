#!/usr/bin/env bash
# Install nginx from Debian's packages when missing: tests/test_deploy.py runs `nginx -t` on
# deploy/nginx.conf (the real parser). The system nginx service is never configured or started.
set -u
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "o16n: installing nginx from Debian packages..."
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package's postinst from starting the service: a policy-rc.d that denies it, for the install only.
  added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added=1
  fi
  apt-get update -qq && apt-get install -y -qq nginx >/dev/null
  status=$?
  if [ -n "$added" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$status" = 0 ]; then exit 0; fi
fi
echo "o16n: nginx is required for the deployment lint (nginx -t): install it (apt-get install nginx)" >&2
exit 1
