"""A throw-away one-node SLURM cluster for tests (root, Linux, Debian packages, no systemd).

``SlurmCluster(base)`` installs Debian's ``slurmctld slurmd slurm-client munge`` if they are
missing, writes ``slurm.conf`` and ``gres.conf`` under ``base``, starts ``munged``,
``slurmctld`` and ``slurmd`` (each daemonises and writes its pid file under ``base/run``) and
waits until the node is ``idle``. ``stop()`` cancels what is still queued, then stops every
daemon it started by pid (slurmd first) and removes the ``/etc/slurm/slurm.conf`` symlink it
made. All state (keys, spool, logs, the job completion log) stays under ``base``.

The node has one partition ``debug`` and a stand-in GPU (``gpu:1`` backed by ``/dev/null``) so
that rules asking for a GPU are scheduled on a machine without one. The partition's ``MaxTime``
(``max_time`` minutes; INFINITE by default) is enforced at submission (``EnforcePartLimits=ALL``):
sbatch refuses a job that asks for longer, as a real cluster's partition does. The node's CPUs and memory
are taken from the configuration (``SlurmdParameters=config_overrides``): memory is bookkeeping
only here (no cgroups), so the workflow's real requests (up to 8 GB) fit on a small machine.
Finished jobs stay visible to ``scontrol``/``squeue`` for an hour (``MinJobAge``), and every
finished job gets one line in ``base/log/jobcomp.txt`` (``JobCompType=jobcomp/filetxt``).

Pitfalls this works around: ``srun`` inside a job (the plugin's jobstep) drops ``SLURM_CONF``,
hence the symlink; a GPU gres without ``File=`` drains the node; munged wants its socket folder
searchable by all; without slurmdbd, snakemake must poll with ``squeue`` (so ``MinJobAge`` is long).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
EXECUTABLES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel", "munged", "mungekey")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by landtaxa tests/slurm_cluster.py"
SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# (name in the pid file, name in /proc/<pid>/comm), stopped in this order
DAEMONS = (("slurmd", "slurmd"), ("slurmctld", "slurmctld"), ("munged", "munged"))
STAND_IN_GPUS = ("/dev/null", "/dev/zero")
_KEY = re.compile(r"(?:^|(?<=\s))([A-Z][A-Za-z0-9_/:]*)=")


class ClusterError(RuntimeError):
    """The cluster could not be brought up (the message carries the daemons' log tails)."""


def parse_record(line: str) -> dict[str, str]:
    """``Key=value`` pairs of one ``scontrol show job --oneliner`` or jobcomp/filetxt line.

    A value runs up to the next `` Key=`` (a capitalised word), so paths with spaces survive.
    """
    keys = list(_KEY.finditer(line))
    ends = [k.start() for k in keys[1:]] + [len(line)]
    return {k.group(1): line[k.end() : end].strip() for k, end in zip(keys, ends, strict=True)}


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + SBIN)


def ensure_installed(timeout: int = 900) -> None:
    """apt-get install the SLURM and munge packages unless all their programs are present."""
    if all(_which(exe) for exe in EXECUTABLES):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    for cmd in (apt + ["update", "-q"], apt + ["install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            out = proc.stdout[-2000:] + proc.stderr[-2000:]
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    missing = [exe for exe in EXECUTABLES if not _which(exe)]
    if missing:
        raise ClusterError(f"installed {' '.join(PACKAGES)} but {', '.join(missing)} still not found")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int, comm: str) -> bool:
    """True while ``pid`` is a live (not zombie) process named ``comm``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return name == comm[:15] and state not in ("Z", "X")


def _stop_pid(pid: int, comm: str, wait: float = 15.0) -> None:
    """SIGTERM ``pid`` if it is still ``comm``, then SIGKILL it after ``wait`` seconds."""
    for sig, patience in ((signal.SIGTERM, wait), (signal.SIGKILL, 5.0)):
        if not _alive(pid, comm):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and _alive(pid, comm):
            time.sleep(0.1)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop_daemons_of(run_dir: Path) -> None:
    for name, comm in DAEMONS:
        pid = _read_pid(run_dir / f"{name}.pid")
        if pid is not None:
            _stop_pid(pid, comm)


class SlurmCluster:
    """A one-node SLURM cluster whose state lives under ``base``; use as a context manager."""

    def __init__(self, base: Path, partition: str = "debug", cluster_name: str = "ci", gpus: int = 1,
                 max_time: int | None = None) -> None:
        if not 1 <= gpus <= len(STAND_IN_GPUS):
            raise ValueError(f"gpus must be 1 to {len(STAND_IN_GPUS)}")
        self.gpus = gpus
        self.max_time = max_time  # minutes, the partition's MaxTime (None: INFINITE)
        self.base = Path(base).resolve()
        self.partition = partition
        self.cluster_name = cluster_name
        self.host = socket.gethostname().split(".")[0]
        self.etc, self.run_dir, self.log_dir = self.base / "etc", self.base / "run", self.base / "log"
        self.munge_dir = self.base / "munge"
        # munged wants every folder above its socket searchable by all, and pytest's temp
        # folders are 0700: the socket gets its own folder in the system temp dir, removed by stop()
        self.socket_dir: Path | None = None
        self.conf = self.etc / "slurm.conf"
        self.jobcomp = self.log_dir / "jobcomp.txt"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.env["PATH"] = self.env.get("PATH", "") + os.pathsep + SBIN
        self._made_symlink = False
        self._started = False

    # -- configuration --------------------------------------------------------------------
    def _write_config(self) -> None:
        cpus = max(2, os.cpu_count() or 1)  # rules with threads: 2 need two CPUs on the node
        with open("/proc/meminfo") as meminfo:
            total_mb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1]) // 1024
        memory_mb = max(total_mb - 512, 16384)  # bookkeeping only (no cgroups), see the module doc
        b, h = self.base, self.host
        self.conf.write_text(
            f"""{MARKER}
ClusterName={self.cluster_name}
SlurmctldHost={h}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket_dir}/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool
SlurmctldPidFile={self.run_dir}/slurmctld.pid
SlurmdPidFile={self.run_dir}/slurmd.pid
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=3600
KillWait=5
DefMemPerCPU=1000
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
EnforcePartLimits=ALL
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName={h} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime={self.max_time or "INFINITE"} State=UP
"""
        )
        # a GPU gres without File= is dropped and the node drains: stand-in device files
        devices = "".join(f"NodeName={h} Name=gpu File={dev} Count=1\n" for dev in STAND_IN_GPUS[: self.gpus])
        (self.etc / "gres.conf").write_text(f"{MARKER}\nAutoDetect=off\n{devices}")

    def _link_system_conf(self) -> None:
        """Point /etc/slurm/slurm.conf at our config: srun inside jobs ignores SLURM_CONF."""
        if SYSTEM_CONF.is_symlink() or SYSTEM_CONF.exists():
            target = SYSTEM_CONF.resolve()
            ours = SYSTEM_CONF.is_symlink() and (not target.exists() or target.read_text().startswith(MARKER))
            if not ours:
                raise ClusterError(f"{SYSTEM_CONF} exists and is not a test cluster's: refusing to replace it")
            # a crashed earlier test run: stop its daemons, drop its socket folder, take the link over
            _stop_daemons_of(target.parent.parent / "run")
            stale = re.search(r"^AuthInfo=socket=(\S+)$", target.read_text(), re.M) if target.exists() else None
            if stale and Path(stale[1]).parent.name.startswith("landtaxa-munge-"):
                shutil.rmtree(Path(stale[1]).parent, ignore_errors=True)
            SYSTEM_CONF.unlink()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._made_symlink = True

    # -- daemons ----------------------------------------------------------------------------
    def _daemon(self, name: str, *args: str) -> None:
        """Start a daemonising program and wait for its pid file."""
        pid_file = self.run_dir / f"{name}.pid"
        with open(self.log_dir / f"{name}.out", "ab") as out:
            proc = subprocess.run([_which(name) or name, *args], env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=out, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid = _read_pid(pid_file)
            if pid is not None and _alive(pid, name):
                return
            time.sleep(0.1)
        raise ClusterError(f"{name} did not start (exit {proc.returncode}):\n{self.logs()}")

    def node_state(self) -> str:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True,
                              timeout=30)
        return proc.stdout.strip()

    def start(self, timeout: float = 90.0) -> SlurmCluster:
        ensure_installed()
        for folder in (self.etc, self.run_dir, self.log_dir, self.base / "state", self.base / "spool"):
            folder.mkdir(parents=True, exist_ok=True)
        self.munge_dir.mkdir(parents=True, exist_ok=True)
        self._started = True  # from here on, stop() cleans up whatever did start
        self.socket_dir = Path(tempfile.mkdtemp(prefix="landtaxa-munge-"))
        self.socket_dir.chmod(0o755)
        self._write_config()
        key = self.munge_dir / "munge.key"
        subprocess.run([_which("mungekey") or "mungekey", "--create", f"--keyfile={key}", "--force"],
                       env=self.env, check=True, capture_output=True, timeout=60)
        key.chmod(0o600)
        self._daemon("munged", f"--key-file={key}", f"--socket={self.socket_dir}/munge.socket.2",
                     f"--pid-file={self.run_dir}/munged.pid", f"--log-file={self.log_dir}/munged.log",
                     f"--seed-file={self.munge_dir}/munged.seed")
        self._link_system_conf()
        self._daemon("slurmctld")
        self._daemon("slurmd")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state == "idle":
                return self
            if state.startswith("drain"):
                subprocess.run(["scontrol", "update", f"nodename={self.host}", "state=resume"], env=self.env,
                               capture_output=True, timeout=30)
            time.sleep(0.5)
        raise ClusterError(f"node never became idle (last state {state!r}):\n{self.logs()}")

    def stop(self) -> None:
        """Cancel what is left, stop every daemon started here (slurmd first), drop the symlink."""
        if not self._started:
            return
        self._started = False
        try:
            if _alive(_read_pid(self.run_dir / "slurmctld.pid") or -1, "slurmctld"):
                subprocess.run(["scancel", "--full", f"--partition={self.partition}"], env=self.env,
                               capture_output=True, timeout=30)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self.squeue("--states=PENDING,RUNNING,COMPLETING"):
                    time.sleep(0.5)
        except (OSError, subprocess.SubprocessError):
            pass
        finally:
            _stop_daemons_of(self.run_dir)
            if self._made_symlink and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
                SYSTEM_CONF.unlink()
            self._made_symlink = False
            if self.socket_dir is not None:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
                self.socket_dir = None

    def running_daemons(self) -> list[str]:
        """The daemons of this cluster still alive, by their pid files."""
        return [name for name, comm in DAEMONS if _alive(_read_pid(self.run_dir / f"{name}.pid") or -1, comm)]

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- records ----------------------------------------------------------------------------
    def squeue(self, *args: str) -> str:
        proc = subprocess.run(["squeue", "-h", *args], env=self.env, capture_output=True, text=True, timeout=30)
        return proc.stdout.strip()

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones stay for MinJobAge), parsed."""
        proc = subprocess.run(["scontrol", "show", "job", "--oneliner"], env=self.env, capture_output=True,
                              text=True, timeout=30, check=True)
        return [parse_record(line) for line in proc.stdout.splitlines() if line.startswith("JobId=")]

    def jobcomp_records(self) -> list[dict[str, str]]:
        """One parsed line per finished job from the job completion log."""
        if not self.jobcomp.exists():
            return []
        return [parse_record(line) for line in self.jobcomp.read_text().splitlines() if line.strip()]

    def logs(self, tail: int = 20) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            if path.name != "jobcomp.txt":
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)
