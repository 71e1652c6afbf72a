"""A real PostgreSQL server for tests, started from the Debian server binaries (initdb/pg_ctl) on a free port in a
scratch folder, as the `postgres` system user when the tests run as root (initdb refuses root)."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def postgres_server():
    """Yields a postgresql:// URL of a fresh database; stops the server and removes its files afterwards."""
    bin_dir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *argv: subprocess.run(_as_server_user([str(bin_dir / argv[0]), *argv[1:]]), check=True,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
        run("pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start")
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "bench")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/bench"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
