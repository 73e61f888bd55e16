"""The ``credit-node`` command line: one module per verb group."""

import os

# gRPC core writes its own unstructured lines to stderr (handshake failures, a port in use);
# the node reports what matters itself, as structured logs and clear errors. An operator
# can still set GRPC_VERBOSITY=debug when chasing a transport problem.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
