"""A pod slice in miniature: several JAX processes on this one machine, each with its own CPU
devices, joined by a localhost coordinator (CPU collectives: gloo, JAX's default).

    python -m spade_jax.local_cluster --processes=2 --devices=4 -- \\
        python -m lra.main --config=configs/listops.py:smoke --config.batch_size=8 --workdir=runs/pod

Every process runs the same command, as every host of a TPU pod or every task of a SLURM job
does. Process i gets JAX_COORDINATOR_ADDRESS=localhost:PORT, JAX_NUM_PROCESSES, JAX_PROCESS_ID=i
(read by `spade_jax.runtime.process.initialize_distributed`), JAX_PLATFORMS=cpu and
--xla_force_host_platform_device_count=DEVICES; `--env=slurm` sets the variables of a SLURM step
on localhost instead (SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID, ...), which
JAX's own cluster detection reads. Each process's output goes to LOG_DIR/process_<i>.log; process
0's is also echoed here. SIGTERM / SIGINT sent to this launcher are passed to every process (a
whole-slice preemption); `--signal_one=SECONDS` instead sends SIGTERM to process 1 alone after
that long (one host preempted). The exit status is the processes' common one, else the first
non-zero one.

The tests (tests/train/test_multiprocess.py) start clusters through `start`.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# SLURM derives the coordinator port from the job id: port = id % 4096 + 61440 (JAX's
# slurm_cluster); the launcher picks a free port in that range and the matching id.
_SLURM_PORT_BASE = 65536 - 4096


def free_port(low: int = 0) -> int:
    """A TCP port on localhost that nothing listens on now (at or above `low` when given)."""
    for port in ([0] if not low else range(low, 65536)):
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free TCP port at or above {low}")


def cpu_env(devices: int, base: dict | None = None) -> dict:
    """A copy of `base` (default: this process's environment) for a JAX process on the CPU with
    `devices` simulated devices; XLA_FLAGS's other flags are kept."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


def process_env(index: int, processes: int, devices: int, port: int, style: str = "jax",
                base: dict | None = None) -> dict:
    """The environment of process `index` of a local cluster of `processes` x `devices`."""
    env = cpu_env(devices, base)
    for name in ("SPADE_JAX_DISTRIBUTED", "TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_ADDRESS",
                 "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    if style == "jax":
        env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES=str(processes),
                   JAX_PROCESS_ID=str(index))
    elif style == "slurm":
        if port < _SLURM_PORT_BASE:
            raise ValueError(f"a SLURM-style cluster needs a port >= {_SLURM_PORT_BASE}, got {port}")
        env.update(SLURM_JOB_ID=str(port - _SLURM_PORT_BASE), SLURM_STEP_NODELIST="localhost",
                   SLURM_NTASKS=str(processes), SLURM_STEP_NUM_NODES="1",
                   SLURM_PROCID=str(index), SLURM_LOCALID=str(index))
    else:
        raise ValueError(f"style must be 'jax' or 'slurm', got {style!r}")
    return env


class Cluster:
    """The processes of one local cluster: `procs[i]` is process i; its output is in `logs[i]`."""

    def __init__(self, procs, logs):
        self.procs, self.logs = procs, logs

    def signal(self, index: int, signum=signal.SIGTERM) -> None:
        if self.procs[index].poll() is None:
            self.procs[index].send_signal(signum)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()

    def wait(self, timeout: float | None = None) -> list:
        """Exit statuses of all processes; on timeout all are killed and TimeoutError raised."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for proc in self.procs:
                proc.wait(None if deadline is None else max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"the local cluster did not finish in {timeout} s; logs: "
                               f"{self.logs}") from None
        return [proc.returncode for proc in self.procs]

    def output(self, index: int) -> str:
        with open(self.logs[index], errors="replace") as f:
            return f.read()


def start(command, *, processes: int, devices: int, log_dir: str, style: str = "jax",
          env: dict | None = None, cwd: str | None = None) -> Cluster:
    """Starts `command` (a list) as `processes` JAX processes of `devices` CPU devices each."""
    if processes < 1 or devices < 1:
        raise ValueError(f"processes and devices must be >= 1, got {processes}, {devices}")
    os.makedirs(log_dir, exist_ok=True)
    port = free_port(_SLURM_PORT_BASE if style == "slurm" else 0)
    procs, logs = [], []
    for i in range(processes):
        logs.append(os.path.join(log_dir, f"process_{i}.log"))
        with open(logs[-1], "w") as log:
            procs.append(subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                env=process_env(i, processes, devices, port, style, env)))
    return Cluster(procs, logs)


def _echo(path: str, proc, out) -> None:
    """Copies the growing file `path` to `out` until `proc` has ended."""
    with open(path, errors="replace") as f:
        while True:
            ended = proc.poll() is not None
            chunk = f.read()
            if chunk:
                out.write(chunk)
                out.flush()
            elif ended:
                return
            else:
                time.sleep(0.2)


def combined_status(statuses) -> int:
    """The processes' common exit status, else the first non-zero one (a signal's death as
    128 + signal number, as shells report it)."""
    statuses = [128 - s if s < 0 else s for s in statuses]
    if len(set(statuses)) == 1:
        return statuses[0]
    return next(s for s in statuses if s != 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spade_jax.local_cluster", description=__doc__.split("\n\n")[0],
        usage="%(prog)s [--processes=N] [--devices=D] [--log_dir=DIR] -- COMMAND...")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=4, help="CPU devices per process")
    parser.add_argument("--log_dir", default="local_cluster_logs")
    parser.add_argument("--env", choices=("jax", "slurm"), default="jax")
    parser.add_argument("--signal_one", type=float, default=0.0,
                        help="send SIGTERM to process 1 alone after this many seconds")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command: put it after --, e.g. -- python -m lra.main ...")
    for name in ("processes", "devices"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.signal_one < 0:
        parser.error(f"--signal_one must be >= 0 seconds, got {args.signal_one}")
    if os.path.exists(args.log_dir) and not os.path.isdir(args.log_dir):
        parser.error(f"--log_dir {args.log_dir} is a file: name a folder for the processes' "
                     f"logs")
    if shutil.which(command[0]) is None:
        parser.error(f"command not found: {command[0]!r} (the command after --, e.g. "
                     f"python -m lra.main ...)")
    cluster = start(command, processes=args.processes, devices=args.devices,
                    log_dir=args.log_dir, style=args.env)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, f: [cluster.signal(i, s) for i in range(args.processes)])
    if args.signal_one:
        timer = threading.Timer(args.signal_one, cluster.signal, (min(1, args.processes - 1),))
        timer.daemon = True
        timer.start()
    echo = threading.Thread(target=_echo, args=(cluster.logs[0], cluster.procs[0], sys.stdout),
                            daemon=True)
    echo.start()
    try:
        statuses = cluster.wait(args.timeout)
    except TimeoutError as e:
        print(f"local_cluster: {e}", file=sys.stderr)
        return 124
    echo.join()
    print(f"local_cluster: exit statuses {statuses}; logs in {args.log_dir}/", file=sys.stderr)
    return combined_status(statuses)


if __name__ == "__main__":
    sys.exit(main())
