"""A throwaway PostgreSQL server for the test suite.

The storage tests run on SQLite *and* a real PostgreSQL, never a mock. Where the server
comes from, in order:

1. ``CREDIT_NODE_TEST_PG_URL``: an existing server (the role must be allowed to
   ``CREATE DATABASE``); nothing is started.
2. ``initdb``/``pg_ctl`` on ``PATH`` or in Debian's ``/usr/lib/postgresql/<n>/bin``.
3. Debian's ``postgresql`` package, installed with apt-get when running as root (CI).

The server is private to the test session: a fresh cluster in a temporary directory,
trust authentication on 127.0.0.1 and a private socket directory, ``fsync=off`` for
speed; it is stopped (immediate mode) and deleted at the end. Each test gets its own
database from :func:`create_database`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV_URL = "CREDIT_NODE_TEST_PG_URL"
DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"  # the OS user that runs the server when the tests run as root
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server can be provided; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class LocalServer:
    url: str
    base_dir: Path
    data_dir: Path
    bin_dir: Path
    run_as: str | None
    started_in_s: float


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest Debian version preferred."""
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        # /usr/local/bin may hold symlinks to one version's binaries: follow them so that
        # initdb and pg_ctl come from the same installation.
        real = Path(on_path).resolve().parent
        if (real / "initdb").exists():
            return real
        if shutil.which("initdb") is not None:
            return Path(on_path).parent
    candidates = sorted(
        (p for p in Path("/").glob(DEBIAN_BIN_DIRS.lstrip("/")) if (p / "pg_ctl").exists()),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    return candidates[0] if candidates else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def install_with_apt() -> None:
    """Install Debian's ``postgresql`` package (root only)."""
    print("credit-node tests: PostgreSQL not found; installing Debian's package with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "postgresql"],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"{' '.join(command)} failed (exit {result.returncode}):\n"
                f"{result.stderr.strip()[-2000:]}"
            )


def locate_or_install() -> Path:
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    if os.geteuid() != 0:
        raise PostgresUnavailableError(
            "the storage tests need PostgreSQL, and none was found (initdb/pg_ctl on PATH "
            f"or in {DEBIAN_BIN_DIRS}); install it (Debian: apt-get install postgresql), "
            f"run the tests as root so they can install it, or set {ENV_URL} to a server "
            "URL whose role may CREATE DATABASE"
        )
    install_with_apt()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError(
            f"apt-get installed postgresql but no initdb/pg_ctl appeared in {DEBIAN_BIN_DIRS}"
        )
    return bin_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(command: Sequence[str], run_as: str | None, *, what: str) -> None:
    # initdb and postgres refuse to run as root; as root the server runs as "postgres".
    full = ["runuser", "-u", run_as, "--", *command] if run_as else list(command)
    result = subprocess.run(full, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise PostgresUnavailableError(
            f"{what} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )


def start_local_server() -> LocalServer:
    bin_dir = locate_or_install()
    run_as: str | None = None
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailableError(
                f"running as root, but there is no {SERVER_USER!r} OS user to run the server"
            ) from None
        run_as, owner = SERVER_USER, (account.pw_uid, account.pw_gid)
    # Directly under /tmp (world-traversable) rather than $TMPDIR or pytest's tmp_path,
    # whose parents may not be traversable by the postgres user.
    base = Path(tempfile.mkdtemp(prefix="credit-node-pg-", dir="/tmp" if run_as else None))
    try:
        base.chmod(0o755)
        data_dir, socket_dir, log_file = base / "data", base / "sock", base / "server.log"
        socket_dir.mkdir(mode=0o755)
        if owner is not None:
            for path in (base, socket_dir):
                os.chown(path, *owner)
        started = time.monotonic()
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-instructions",
                "--locale=C",
            ],
            run_as,
            what="initdb",
        )
        port = _start(bin_dir, data_dir, socket_dir, log_file, run_as)
        return LocalServer(
            url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            base_dir=base,
            data_dir=data_dir,
            bin_dir=bin_dir,
            run_as=run_as,
            started_in_s=time.monotonic() - started,
        )
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _start(
    bin_dir: Path, data_dir: Path, socket_dir: Path, log_file: Path, run_as: str | None
) -> int:
    error: PostgresUnavailableError | None = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        options = (
            f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        try:
            _run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(data_dir),
                    "-l",
                    str(log_file),
                    "-o",
                    options,
                    "start",
                ],
                run_as,
                what="pg_ctl start",
            )
            return port
        except PostgresUnavailableError as exc:
            log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            error = PostgresUnavailableError(f"{exc}\nserver log:\n{log}")
    assert error is not None
    raise error


def stop_local_server(server: LocalServer) -> None:
    try:
        _run(
            [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "stop"],
            server.run_as,
            what="pg_ctl stop",
        )
    finally:
        shutil.rmtree(server.base_dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[str, float]]:
    """The server URL (``postgresql+psycopg://.../postgres``) and how long it took to start."""
    from_env = os.environ.get(ENV_URL)
    if from_env:
        url = make_url(from_env)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        yield url.render_as_string(hide_password=False), 0.0
        return
    server = start_local_server()
    try:
        yield server.url, server.started_in_s
    finally:
        stop_local_server(server)


def create_database(server_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    name = f"test_{secrets.token_hex(6)}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            # CREATE DATABASE cannot run in a transaction, hence AUTOCOMMIT; the name is
            # ours (hex), so quoting it is enough.
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
