#!/usr/bin/env bash
# Install OpenLDAP's server (slapd) and client tools from Debian's packages when missing.
# The LDAP tests start their own slapd on a free port from a generated configuration;
# the system slapd service is never configured or started.
set -u
if command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; then
  if command -v ldapadd >/dev/null 2>&1; then exit 0; fi
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "o16n: installing slapd and ldap-utils from Debian packages..."
  export DEBIAN_FRONTEND=noninteractive
  # slapd's postinst would configure a directory; preseed it to skip that.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections 2>/dev/null || true
  if apt-get update -qq && apt-get install -y -qq slapd ldap-utils >/dev/null; then
    exit 0
  fi
fi
echo "o16n: slapd and ldap-utils are required for the LDAP tests: install them (apt-get install slapd ldap-utils)" >&2
exit 1
