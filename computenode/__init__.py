"""The compute node: gRPC server, shell pools, realtime models."""

import os

# Shells start by fork+exec while gRPC threads are polling; gRPC's fork handlers can then abort
# the child before it execs (ev_epoll1 "Check failed: next_worker->state == KICKED"). The child
# only execs, so it needs none of them. Must be set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
