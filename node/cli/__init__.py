"""The ``credit-node`` command line: one module per verb group."""

import os

# gRPC core logs handshake failures on stderr in its own format; the node logs what matters
# itself, in structured form. An operator can still set GRPC_VERBOSITY=debug.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
