"""`python -m lra.generate` writes release layouts that load_split finds, also when data_dir is
the parent of `lra_release/lra_release`."""
import os

import pytest

from lra.data import TASKS, load_split
from lra.generate.__main__ import main


@pytest.mark.parametrize("task, argv", [
    ("listops", ["--num=12", "--min_length=5", "--max_length=40"]),
    ("pathfinder", ["--num=10", "--per_folder=10", "--processes=1"]),
    ("text", ["--num=6"]),
    ("retrieval", ["--num=20"]),
    ("image", ["--num=60"]),
])
def test_cli_writes_what_load_split_reads(tmp_path, task, argv, capsys):
    release = tmp_path / "lra_release" / "lra_release"
    assert main([f"--task={task}", f"--out={release}", "--seed=1"] + argv) == 0
    assert "wrote" in capsys.readouterr().out
    split = load_split(task, "test", str(tmp_path))  # found under lra_release/lra_release
    example = split[0]
    key = "inputs1" if TASKS[task].dual else "inputs"
    assert example[key].shape == (TASKS[task].max_length,)
    assert 0 <= example["targets"] < TASKS[task].num_classes
    assert sorted(os.listdir(tmp_path)) == [".lra_cache", "lra_release"]


def test_cli_rejects_too_few_examples(tmp_path):
    with pytest.raises(SystemExit):
        main(["--task=listops", f"--out={tmp_path}", "--num=2"])


def test_cli_stats_prints_the_table_beside_the_original(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["--task=pathfinder", f"--out={out}", "--num=12", "--per_folder=6",
                 "--processes=1"]) == 0
    capsys.readouterr()
    assert main(["--stats", str(out), "--stats_images=10"]) == 0
    table = capsys.readouterr().out.splitlines()
    folder = out / "pathfinder32" / "curv_contour_length_14"
    assert table[0] == ("| statistic (mean per image) | original 32 px | "
                        f"{folder} (10 images, 32 px) |")
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| fraction of pixels > 0", "| mean pixel", "| mean of the pixels > 0",
        "| 8-connected components of pixels > 0", "| pixels equal to 255"]


def test_cli_needs_task_and_out_unless_stats(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--num=12"])
    assert "--task and --out are required (unless --stats)" in capsys.readouterr().err
    assert main(["--stats", str(tmp_path)]) == 2  # a folder without images: a user error
    assert "no PNG images there" in capsys.readouterr().err
