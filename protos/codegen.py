"""Generate the Python code (and mypy stubs) for the wire contract.

Run ``python protos/codegen.py`` after changing a ``.proto`` file; the test suite
fails while the committed code is stale (``tests/test_protos.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROTOS = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    return sorted((PROTOS / "creditnet").rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` under ``out_dir``."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTOS)) for p in proto_files()),
    ]
    # The mypy-protobuf plugins are scripts beside the running interpreter.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTOS)
