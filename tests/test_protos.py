"""The wire contract: committed generated code matches the .proto files, and buf lint is clean."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = PROTOS / "creditnet" / "v1"


def generate(out_dir: Path) -> None:
    subprocess.run(
        [sys.executable, str(PROTOS / "codegen.py"), str(out_dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _generated_names(directory: Path) -> set[str]:
    return {
        p.name for p in directory.iterdir() if p.name.endswith((".py", ".pyi")) and "_pb2" in p.name
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = tmp_path / "creditnet" / "v1"
    assert _generated_names(fresh) == _generated_names(GENERATED), (
        "generated files differ; run: python protos/codegen.py"
    )
    stale = [
        name
        for name in sorted(_generated_names(fresh))
        if not filecmp.cmp(fresh / name, GENERATED / name, shallow=False)
    ]
    assert not stale, f"stale generated code {stale}; run: python protos/codegen.py"


def test_every_proto_has_generated_code() -> None:
    for proto in sorted(GENERATED.glob("*.proto")):
        stem = proto.stem
        assert (proto.parent / f"{stem}_pb2.py").exists(), f"{proto.name} was never generated"


def test_buf_lint_is_clean() -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent))
    assert buf, "the Buf CLI (PyPI package buf-bin) belongs to the test extra"
    result = subprocess.run([buf, "lint"], cwd=PROTOS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", ["client_pb2_grpc", "peer_pb2_grpc", "manifest_pb2"])
def test_generated_modules_import(module: str) -> None:
    __import__(f"creditnet.v1.{module}")
