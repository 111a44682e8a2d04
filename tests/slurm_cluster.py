"""A real one-node SLURM cluster with accounting, started in a temporary directory for tests.

SLURM is tested against the real thing: munged, MariaDB, slurmdbd, slurmctld and slurmd run as
children of the test process, with every config, key, socket, state, spool, log and pid file
under one directory, and talk over loopback ports picked free at start. Nothing of the machine's
own configuration is read or touched, so a second cluster (another test session) can run beside
this one. The Debian packages come from ``scripts/install_slurm.sh``.

Accounting is part of it, not an extra: submitit learns that a job ended without writing its
result (cancelled, killed, out of time) only from ``sacct``, and without slurmdbd ``sacct``
knows no job, so waiting on such a job never ends.

Written for root on a machine without systemd or cgroups (a container): the daemons run as root
(``SlurmUser=root``), processes are tracked through their parent ids
(``proctrack/linuxproc``) and nothing is confined (``task/none``).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from experiments.studies.local import die_with_parent

# Every daemon and client the cluster needs: what scripts/install_slurm.sh installs.
BINARIES = ("munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")

# A requeued job waits cred_expire + 1 s before it starts again: 10 s (the default is 120 s)
# keeps the requeue tests short.
CRED_EXPIRE_S = 10

# Seconds between SIGTERM and SIGKILL when SLURM ends a job (cancel, requeue, time limit).
KILL_WAIT_S = 5

START_TIMEOUT_S = 60.0



def _which(name: str) -> str | None:
    """Where ``name`` is on PATH or in /usr/sbin, /sbin (the daemons, off a user's PATH)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def missing_binaries() -> list[str]:
    """The cluster's programs that are not installed."""
    return [name for name in BINARIES if _which(name) is None]


def _free_port() -> int:
    """A loopback TCP port that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running cluster: ``env`` is what a client (sbatch, sacct, submitit) needs to reach it."""

    root: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The variables that point SLURM's commands at this cluster instead of /etc/slurm."""
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout (raises on failure)."""
        return subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True,
                              check=True, timeout=timeout).stdout

    def stop(self) -> None:
        """Cancel every job, then stop each daemon by its PID, the last started first."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--user", getpass.getuser()], env={**os.environ, **self.env},
                           capture_output=True, timeout=30)
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def log(self, name: str) -> str:
        """The tail of a daemon's log file and output, for a failure message."""
        paths = [self.root / "log" / f"{name}.{suffix}" for suffix in ("log", "out")]
        return "\n".join(line for path in paths if path.is_file()
                         for line in path.read_text(errors="replace").splitlines()[-20:])

    def _spawn(self, name: str, argv: list[str]) -> None:
        # Foreground daemons, children of this process: their PIDs are known, nothing forks away,
        # and they end with it even if it is killed (PR_SET_PDEATHSIG). Their own session keeps
        # a Ctrl-C of the tests from reaching them before stop() has cancelled the jobs.
        with open(self.root / "log" / f"{name}.out", "ab") as out:
            self.processes[name] = subprocess.Popen([_which(argv[0]) or argv[0], *argv[1:]], stdout=out,
                                                    stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                                    start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))

    def _wait(self, what: str, ready: Callable[[], bool], names: tuple[str, ...]) -> None:
        """Poll ``ready()`` until it holds; a daemon that died or a timeout raises with its log."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for name in names:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with code {self.processes[name].returncode} "
                                       f"while waiting for {what}:\n{self.log(name)}")
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}:\n"
                                   + "\n".join(self.log(name) for name in names))
            time.sleep(0.2)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_cluster(root: Path) -> SlurmCluster:
    """Write the configs into ``root`` and start munged, MariaDB, slurmdbd, slurmctld and slurmd;
    returns once the node is idle and accounting answers. Stops what it started if any step fails.
    """
    cluster = SlurmCluster(root)
    try:
        _start(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _settings(settings: dict[str, object]) -> str:
    """A SLURM config file's text: one ``Key=value`` line per setting."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _start(cluster: SlurmCluster) -> None:
    root = cluster.root
    for sub in ("etc", "log", "run", "munge", "mysql", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ports = {name: _free_port() for name in ("mysql", "slurmdbd", "slurmctld", "slurmd")}
    munge_socket = root / "munge" / "munge.socket"
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    cluster._spawn("munged", ["munged", "--foreground", "--force", f"--socket={munge_socket}",
                              f"--key-file={key}", f"--pid-file={root / 'run' / 'munged.pid'}",
                              f"--log-file={root / 'log' / 'munged.log'}",
                              f"--seed-file={root / 'munge' / 'munged.seed'}"])

    # MariaDB for slurmdbd: its own data dir, root without a password, loopback only.
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={root / 'mysql'}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    cluster._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={root / 'mysql'}", "--user=root",
                                "--bind-address=127.0.0.1", f"--port={ports['mysql']}", "--skip-name-resolve",
                                f"--socket={root / 'run' / 'mysqld.sock'}",
                                f"--pid-file={root / 'run' / 'mysqld.pid'}",
                                f"--log-error={root / 'log' / 'mariadbd.log'}",
                                "--innodb-buffer-pool-size=32M", "--innodb-use-native-aio=0"])
    cluster._wait("MariaDB", lambda: _port_open(ports["mysql"]), ("munged", "mariadbd"))

    auth = {"AuthType": "auth/munge", "AuthInfo": f"socket={munge_socket},cred_expire={CRED_EXPIRE_S}"}
    dbd_conf = root / "etc" / "slurmdbd.conf"  # slurmdbd looks for it beside SLURM_CONF
    dbd_conf.write_text(_settings({
        "DbdHost": "localhost", "DbdAddr": "127.0.0.1", "DbdPort": ports["slurmdbd"], "SlurmUser": "root", **auth,
        "StorageType": "accounting_storage/mysql", "StorageHost": "127.0.0.1", "StoragePort": ports["mysql"],
        "StorageUser": "root", "StorageLoc": "slurm_acct_db",
        "PidFile": root / "run" / "slurmdbd.pid", "LogFile": root / "log" / "slurmdbd.log",
    }))
    dbd_conf.chmod(0o600)  # slurmdbd refuses a config others can read
    # this machine as slurmd sees it: NodeName=<host> CPUs=... RealMemory=...
    node = subprocess.run([_which("slurmd") or "slurmd", "-C"], check=True, capture_output=True,
                          text=True).stdout.splitlines()[0]
    cluster.conf.write_text(_settings({
        "ClusterName": "optbench", "SlurmctldHost": f"{socket.gethostname()}(127.0.0.1)", "SlurmUser": "root",
        **auth, "SlurmctldPort": ports["slurmctld"], "SlurmdPort": ports["slurmd"],
        "StateSaveLocation": root / "state", "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "run" / "slurmctld.pid", "SlurmdPidFile": root / "run" / "slurmd.pid",
        "SlurmctldLogFile": root / "log" / "slurmctld.log", "SlurmdLogFile": root / "log" / "slurmd.log",
        # no systemd, no cgroups: track processes by parent id, confine nothing, gather no usage
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_CPU", "MpiDefault": "none",
        "ReturnToService": 2, "MailProg": "/bin/true", "KillWait": KILL_WAIT_S, "MinJobAge": 300,
        # look at pending jobs every second: a requeued job starts once its cred_expire wait ends
        "SchedulerParameters": "sched_interval=1",
        "AccountingStorageType": "accounting_storage/slurmdbd", "AccountingStorageHost": "127.0.0.1",
        "AccountingStoragePort": ports["slurmdbd"],
        "AccountingStoragePass": munge_socket,  # calls to slurmdbd: else the default socket, and a stall
    }) + f"{node} NodeAddr=127.0.0.1 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n")

    cluster._spawn("slurmdbd", ["slurmdbd", "-D"])
    cluster._wait("slurmdbd", lambda: _port_open(ports["slurmdbd"]), ("munged", "mariadbd", "slurmdbd"))
    cluster._spawn("slurmctld", ["slurmctld", "-D", "-i"])
    cluster._spawn("slurmd", ["slurmd", "-D"])
    daemons = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
    cluster._wait("an idle node", lambda: cluster.command("sinfo", "-h", "-N", "-o", "%t").split() == ["idle"],
                  daemons)
    cluster._wait("the cluster in accounting",
                  lambda: "optbench" in cluster.command("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"),
                  daemons)
