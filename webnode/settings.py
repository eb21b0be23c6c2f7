"""Settings of a web node process (see common/settings.py for how they load)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common import grpc_runtime
from common.settings import SettingsError, setting


@dataclass(frozen=True)
class WebNodeSettings:
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    host: str = setting("127.0.0.1", "Address the web node's HTTP server binds to.")
    port: int = setting(12800, "Port of the web node's HTTP server (0 picks a free port).")
    grpc_experiments: str = setting(grpc_runtime.DEFAULT, grpc_runtime.HELP)
    data_dir: Path = setting(Path(".o16n"), "Data directory: the embedded store lives here in one-box mode.")
    database_url: str = setting(
        "", "A postgresql:// DSN selects Postgres; empty uses the embedded SQLite store in the data dir."
    )
    redis_url: str = setting("", "A redis:// URL for coordination between web nodes; empty = in-process.")
    redis_prefix: str = setting("o16n:", "Prefix of every Redis key and channel (lets deployments share a Redis).")
    compute_nodes: list[str] = setting(
        [], "Comma-separated compute node URIs that seed the central list on the first start."
    )
    admin_password: str = setting(
        "", "Password of the local admin user; if unset on the first start one is generated and printed."
    )
    access_token_lifetime: int = setting(3600, "Seconds an access token is valid (expires_in).")
    refresh_token_idle_lifetime: int = setting(
        14 * 24 * 3600, "Seconds a refresh token stays valid without being used."
    )
    refresh_token_max_lifetime: int = setting(
        90 * 24 * 3600, "Seconds after the login at which a chain of refresh tokens ends."
    )
    token_issuer: str = setting("o16n", "The iss claim of access tokens.")
    token_audience: str = setting("o16n", "The aud claim of access tokens.")
    bcrypt_rounds: int = setting(12, "bcrypt work factor for local user passwords.")
    max_body_size: int = setting(64 * 1024 * 1024, "Largest JSON request body accepted, in bytes (413 above).")
    compute_timeout: float = setting(
        600.0, "Seconds a web node waits for a compute node to answer one execution (504 after)."
    )
    health_interval: float = setting(2.0, "Seconds between health checks of each compute node.")
    compute_streams: int = setting(
        1,
        "Long-lived gRPC streams to each compute node for requests up to 64 KiB (requests queued together share "
        "a message, so fewer streams cost less CPU); larger requests use one more stream of their own.",
    )
    batch_max_parallel_count: int = setting(
        100, "Cap on a batch execution's parallelCount: records of one execution running at once."
    )
    batch_max_records: int = setting(100_000, "Most records one batch execution may hold (400 above).")
    batch_lease_seconds: float = setting(
        15.0, "Seconds after which another web node resumes a batch execution whose web node stopped."
    )
    compute_nodes_reload_interval: float = setting(
        30.0, "Seconds between re-reads of the central compute node list (and DNS) besides change notifications."
    )
    compute_secret: str = setting(
        "", "Shared secret sent on every gRPC call to compute nodes (must match theirs); empty = none."
    )
    compute_tls_ca: str = setting("", "PEM CA verifying compute nodes' certificates; set = gRPC over TLS.")
    compute_tls_client_cert: str = setting("", "PEM client certificate a web node presents to compute nodes (mTLS).")
    compute_tls_client_key: str = setting("", "PEM private key of the web node's client certificate.")
    compute_tls_server_name: str = setting(
        "", "Name expected in compute nodes' certificates; empty = the host name or address dialled."
    )
    tls_cert: str = setting("", "PEM certificate (chain) of the web node's HTTPS server; set with the key = HTTPS.")
    tls_key: str = setting("", "PEM private key of the web node's HTTPS certificate.")
    service_pool_size_limit: int = setting(
        64, "Largest InitialPoolSize / MaxPoolSize accepted for a service's dedicated pool (per compute node)."
    )
    session_idle_timeout: float = setting(
        3600.0, "Seconds a remote session may stay without calls before its compute node closes it (0 = never)."
    )
    session_sweep_interval: float = setting(
        10.0, "Seconds between checks that remove records of sessions their compute node closed."
    )
    session_upload_limit: int = setting(
        2 * 1024**3, "Largest file or workspace object uploaded into a session, in bytes (413 above)."
    )
    signing_key_file: str = setting(
        "", "PEM file of an EC P-256 private key that signs access tokens; empty = a key kept in the central store."
    )
    auth_sync_interval: float = setting(
        5.0, "Seconds between a web node's re-reads of signing keys and revoked logins from the store."
    )
    login_max_failures_per_user: int = setting(
        5, "Failed logins of one user name within the throttle window before 429 Too Many Requests."
    )
    login_max_failures_per_address: int = setting(
        50, "Failed logins from one client address within the throttle window before 429 Too Many Requests."
    )
    login_throttle_window: int = setting(900, "Seconds failed logins are counted (and the Retry-After of a 429).")
    role_owner_groups: list[str] = setting([], "Comma-separated LDAP groups / OIDC groups or roles mapped to Owner.")
    role_contributor_groups: list[str] = setting(
        [], "Comma-separated LDAP groups / OIDC groups or roles mapped to Contributor."
    )
    role_reader_groups: list[str] = setting(
        [], "Comma-separated groups mapped to Reader; declaring any denies access to users with no mapped role."
    )
    local_login_with_external: bool = setting(
        False, "Let local users (and admin) log in while LDAP or OIDC is enabled (ML Server disables it)."
    )
    ldap_enabled: bool = setting(False, "Authenticate POST /login against LDAP / Active Directory.")
    ldap_host: str = setting("", "LDAP server host name.")
    ldap_port: int = setting(0, "LDAP server port; 0 = 389, or 636 with LDAPS.")
    ldap_use_ldaps: bool = setting(False, "Connect with LDAPS (TLS).")
    ldap_ca_file: str = setting("", "CA certificate file that verifies the LDAPS server; empty = system CAs.")
    ldap_query_user_dn: str = setting("", "DN of the query user that searches for users.")
    ldap_query_user_password: str = setting("", "Password of the query user.")
    ldap_search_base: str = setting("", "Base DN under which users are searched.")
    ldap_search_filter: str = setting("(cn={0})", "LDAP filter finding a user; {0} is the (escaped) user name.")
    ldap_unique_user_identifier_attribute_name: str = setting(
        "", "Attribute whose value names the user in o16n (service owner); empty = the login name."
    )
    ldap_group_search_base: str = setting("", "Base DN of group entries; empty = the user search base.")
    ldap_group_search_filter: str = setting(
        "(|(member={dn})(uniqueMember={dn})(memberUid={0}))",
        "Filter finding the groups of a user ({dn} = user DN, {0} = user name); their cn values are the groups.",
    )
    ldap_timeout: float = setting(10.0, "Seconds to wait for the LDAP server.")
    oidc_issuer: str = setting("", "Issuer (iss) of accepted external bearer tokens (OIDC / Azure AD); empty = off.")
    oidc_audience: str = setting("", "Audience (aud) external bearer tokens must carry.")
    oidc_jwks_url: str = setting("", "URL of the issuer's JWKS (public keys).")
    oidc_jwks_file: str = setting("", "File holding the issuer's JWKS, instead of a URL.")
    oidc_username_claim: str = setting("preferred_username", "Claim naming the user (falls back to sub).")
    oidc_group_claims: list[str] = setting(
        ["groups", "roles"], "Claims whose values are matched against the role group lists."
    )

    def validate(self) -> None:
        grpc_runtime.validate(self.grpc_experiments)
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingsError("O16N_DATABASE_URL must be a postgresql:// DSN (or empty for the embedded store)")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("O16N_REDIS_URL must be a redis:// URL (or empty for in-process coordination)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("O16N_TLS_CERT and O16N_TLS_KEY go together")
        if bool(self.compute_tls_client_cert) != bool(self.compute_tls_client_key):
            raise SettingsError("O16N_COMPUTE_TLS_CLIENT_CERT and O16N_COMPUTE_TLS_CLIENT_KEY go together")
        if self.compute_tls_client_cert and not self.compute_tls_ca:
            raise SettingsError("O16N_COMPUTE_TLS_CLIENT_CERT needs O16N_COMPUTE_TLS_CA")
        if self.access_token_lifetime <= 0:
            raise SettingsError("O16N_ACCESS_TOKEN_LIFETIME must be positive")
        if not 4 <= self.bcrypt_rounds <= 31:
            raise SettingsError("O16N_BCRYPT_ROUNDS must be between 4 and 31")
        if self.ldap_enabled and not (self.ldap_host and self.ldap_search_base):
            raise SettingsError("O16N_LDAP_ENABLED needs O16N_LDAP_HOST and O16N_LDAP_SEARCH_BASE")
        if self.oidc_issuer and not self.oidc_audience:
            raise SettingsError("O16N_OIDC_ISSUER needs O16N_OIDC_AUDIENCE")
        if self.oidc_issuer and bool(self.oidc_jwks_url) == bool(self.oidc_jwks_file):
            raise SettingsError("O16N_OIDC_ISSUER needs exactly one of O16N_OIDC_JWKS_URL and O16N_OIDC_JWKS_FILE")
        if self.login_max_failures_per_user < 1 or self.login_max_failures_per_address < 1:
            raise SettingsError("O16N_LOGIN_MAX_FAILURES_PER_USER/ADDRESS must be at least 1")
