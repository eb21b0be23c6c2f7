"""Coordination channels of authentication (names only, so the command line imports nothing heavy)."""

REVOCATIONS = "revocations"  # a revoked chain id per message
KEYS = "signing-keys"  # the signing keys changed
