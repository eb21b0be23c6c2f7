"""Settings of a compute node process (see common/settings.py for how they load)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common import grpc_runtime
from common.settings import SettingsError, setting


@dataclass(frozen=True)
class ComputeNodeSettings:
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    compute_host: str = setting("127.0.0.1", "Address the compute node's gRPC server binds to.")
    compute_port: int = setting(12805, "Port of the compute node's gRPC server (0 picks a free port).")
    grpc_experiments: str = setting(grpc_runtime.DEFAULT, grpc_runtime.HELP)
    data_dir: Path = setting(Path(".o16n"), "Data directory; shells get working directories below it.")
    python_pool_initial_size: int = setting(2, "Python shells started ahead, warm, when the node starts.")
    python_pool_max_size: int = setting(8, "Most Python shells alive at once in the generic pool.")
    r_pool_initial_size: int = setting(1, "R shells started ahead, warm, when the node starts.")
    r_pool_max_size: int = setting(4, "Most R shells alive at once in the generic pool.")
    r_enabled: bool = setting(True, "Offer the R runtime when R and rpy2 can be imported.")
    shell_acquire_timeout: float = setting(
        30.0, "Seconds a request waits for a free shell before it fails as busy (503)."
    )
    reply_batch_hold_ms: float = setting(
        1.0,
        "Milliseconds a finished execution's reply may wait for those of other requests still running "
        "on the same web-node stream, so that they travel as one gRPC message (0: send each at once).",
    )
    shell_run_budget_ms: float = setting(
        1.0,
        "Requests of one service that arrive together go to one shell in a single write, as many as fit in "
        "this many milliseconds of the service's recent execution time (at most 16): the shell runs them "
        "one after another, woken once. Slower services' requests each take a shell (0: always).",
    )
    shell_queue_limit: int = setting(1000, "Most requests waiting for a shell per pool; more fail at once.")
    shell_max_uses: int = setting(
        100000,
        "A shell is replaced after this many requests (its successor starts a tenth of them ahead). A new "
        "Python shell costs about 0.4 s of CPU (numpy and pandas imports), an R shell about as much: fewer "
        "uses spend more CPU per request. O16N_SHELL_MEMORY_CEILING_MB replaces shells that grow.",
    )
    shell_start_timeout: float = setting(60.0, "Seconds a new shell may take to start and answer.")
    execution_timeout: float = setting(600.0, "Most seconds one service execution may run before it is killed.")
    snapshot_cache_bytes: int = setting(
        4 * 1024**3, "Bytes of snapshot zips a compute node keeps cached by id (least recently used evicted)."
    )
    shell_memory_ceiling_mb: int = setting(
        0, "A shell whose resident memory passes this many MB after a request is replaced (0: never)."
    )
    shell_memory_limit_mb: int = setting(
        0, "Address-space limit (RLIMIT_AS) of each shell in MB; allocations past it fail (0: unlimited)."
    )
    shell_cpu_limit_seconds: int = setting(
        0, "CPU-time limit (RLIMIT_CPU) of each shell over its life, in seconds; then it is killed (0: unlimited)."
    )
    shell_open_files_limit: int = setting(0, "Open-file limit (RLIMIT_NOFILE) of each shell (0: inherited).")
    shell_run_as_user: str = setting(
        "",
        "Run shells as this unprivileged OS user (the compute node must run as root); empty: as the node's user. "
        "The user must be able to run O16N_SHELL_PYTHON and reach O16N_DATA_DIR (checked at start); the data "
        "directory is then left traversable only, all in it but the shells' and sessions' directories private.",
    )
    shell_run_as_uids: str = setting(
        "",
        "FIRST-LAST (e.g. 200000-200999): run each shell as a uid of its own from this range (gid the same "
        "number; no accounts needed; the compute node must run as root), so shells cannot read each other's files "
        "or signal each other. The range must hold more uids than shells alive at once. Not with "
        "O16N_SHELL_RUN_AS_USER; the same O16N_SHELL_PYTHON and data directory checks apply.",
    )
    shell_python: str = setting(
        "",
        "Interpreter the shells run (python -m computenode.shells....); it must import o16n, numpy, pandas and dill "
        "(rpy2 for R). Empty: the compute node's own. With O16N_SHELL_RUN_AS_USER, a virtualenv that user can "
        "execute, e.g. python3 -m venv /opt/o16n-shells && /opt/o16n-shells/bin/pip install /path/to/o16n.",
    )
    shell_cgroup: str = setting(
        "auto",
        "auto: each shell in its own cgroup (v2 cgroup.kill kills everything it forked, also what left its process "
        "group), when the cgroup file system is writable, else process groups only (logged); off: process groups.",
    )
    shell_pids_limit: int = setting(
        0, "Most processes and threads in one shell's cgroup (pids.max; needs cgroups); 0: unlimited."
    )
    node_id: str = setting("", "Name reported in /status; empty means host:port.")
    compute_secret: str = setting(
        "", "Shared secret web nodes must present on every gRPC call (health checks excepted); empty = not checked."
    )
    compute_tls_cert: str = setting("", "PEM certificate of the compute node's gRPC server; set with the key = TLS.")
    compute_tls_key: str = setting("", "PEM private key of the compute node's gRPC server certificate.")
    compute_tls_client_ca: str = setting(
        "", "PEM CA that must have signed web nodes' client certificates (mutual TLS); empty = no client certificate."
    )
    realtime_batch_max_size: int = setting(
        64, "Most rows one call of a realtime (ONNX) model scores when concurrent requests are batched; 1 disables."
    )
    realtime_batch_max_wait: float = setting(
        0.0,
        "Seconds a realtime batch may wait to gather as many requests as the previous model call scored "
        "(0: never wait; batches then hold the requests that arrived while the model ran).",
    )
    realtime_threads: int = setting(
        2,
        "Threads that run realtime (ONNX) model calls on a compute node (calls of a model that take under "
        "50 µs, up to 64 rows, run inline instead).",
    )
    realtime_pickle_pool_max_size: int = setting(2, "Most Python shells scoring pickled realtime models.")

    def validate(self) -> None:
        grpc_runtime.validate(self.grpc_experiments)
        for runtime in ("python", "r"):
            initial = getattr(self, f"{runtime}_pool_initial_size")
            maximum = getattr(self, f"{runtime}_pool_max_size")
            if initial < 0 or maximum < 1 or initial > maximum:
                raise SettingsError(
                    f"O16N_{runtime.upper()}_POOL_INITIAL_SIZE ({initial}) must be between 0 and "
                    f"O16N_{runtime.upper()}_POOL_MAX_SIZE ({maximum}), which must be at least 1"
                )
        if bool(self.compute_tls_cert) != bool(self.compute_tls_key):
            raise SettingsError("O16N_COMPUTE_TLS_CERT and O16N_COMPUTE_TLS_KEY go together")
        if self.compute_tls_client_ca and not self.compute_tls_cert:
            raise SettingsError("O16N_COMPUTE_TLS_CLIENT_CA needs O16N_COMPUTE_TLS_CERT and O16N_COMPUTE_TLS_KEY")
        if self.shell_cgroup not in ("auto", "off"):
            raise SettingsError(f"O16N_SHELL_CGROUP must be auto or off, got {self.shell_cgroup!r}")
        if not 0 <= self.reply_batch_hold_ms <= 1000:
            raise SettingsError("O16N_REPLY_BATCH_HOLD_MS must be between 0 and 1000")
        if not 0 <= self.shell_run_budget_ms <= 1000:
            raise SettingsError("O16N_SHELL_RUN_BUDGET_MS must be between 0 and 1000")
        if self.shell_pids_limit < 0:
            raise SettingsError("O16N_SHELL_PIDS_LIMIT must be 0 (unlimited) or positive")
        if self.shell_acquire_timeout <= 0 or self.execution_timeout <= 0:
            raise SettingsError("timeouts must be positive")
        if self.realtime_batch_max_size < 1 or self.realtime_batch_max_wait < 0:
            raise SettingsError("O16N_REALTIME_BATCH_MAX_SIZE must be at least 1 and O16N_REALTIME_BATCH_MAX_WAIT >= 0")
        if self.realtime_threads < 1 or self.realtime_pickle_pool_max_size < 1:
            raise SettingsError("O16N_REALTIME_THREADS and O16N_REALTIME_PICKLE_POOL_MAX_SIZE must be at least 1")
