"""A real single-node SLURM cluster for tests: munged, slurmctld and slurmd (Debian's slurm-wlm and munge) started
on this machine with their own configuration, key, sockets, ports and state in a scratch folder, and stopped
afterwards. Needs the binaries and root (slurmd launches jobs as their users); otherwise `unavailable()` says why."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


def unavailable() -> str | None:
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"no SLURM here (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the single-node SLURM fixture starts slurmd, which needs root"
    if not Path("/etc/munge/munge.key").exists() and shutil.which("mungekey") is None:
        return "no munge key and no mungekey to make one"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@contextmanager
def slurm_cluster():
    """Yields the path of the cluster's slurm.conf (set SLURM_CONF to it for sbatch/squeue/submitit)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    munge, logs = folder / "munge", folder / "log"
    for sub in ("state", "spool", "log", "munge"):
        (folder / sub).mkdir()
    key = munge / "key"
    if Path("/etc/munge/munge.key").exists():
        shutil.copy("/etc/munge/munge.key", key)
    else:
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o600)
    host = socket.gethostname()
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=benchtest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge / 'sock'}",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={logs / 'slurmctld.log'}", f"SlurmdLogFile={logs / 'slurmd.log'}",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "ReturnToService=2", "MpiDefault=none",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory=4000 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = []
    try:
        daemons.append(subprocess.Popen([_binary("munged"), "--foreground", "--force", f"--socket={munge / 'sock'}",
                                         f"--key-file={key}", f"--log-file={munge / 'log'}",
                                         f"--pid-file={munge / 'pid'}", f"--seed-file={munge / 'seed'}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name in ("slurmctld", "slurmd"):
            daemons.append(subprocess.Popen([_binary(name), "-D", "-f", str(conf)], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the test SLURM node did not come up (state {state!r}); logs in {logs}")
        yield conf
        deadline = time.time() + 120  # let the jobs finish and report before the daemons go
        while time.time() < deadline and subprocess.run(["squeue", "-h"], env=env, capture_output=True,
                                                         text=True).stdout.strip():
            time.sleep(0.5)
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)  # anything left over
        for proc in reversed(daemons):
            proc.terminate()
        for proc in daemons:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
