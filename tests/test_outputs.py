"""Outputs are written whole or not at all; the CLI's errors are one line with exit status 2."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import emkit
from emkit._atomic import Outputs, atomic_path
from emkit.cli import main


def _cli(*argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "emkit.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def _temporaries(folder):
    return glob.glob(os.path.join(folder, ".*.tmp*"))


def test_interrupted_predict_leaves_the_old_output_intact(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "big.npy"
    np.save(data, rng.normal(size=(400_000, 1)))
    model = emkit.GaussianMixture(2, random_state=0).fit(rng.normal(size=(200, 1))).save(tmp_path / "m.npz")
    out = tmp_path / "pred.csv"
    out.write_text("label\nprevious complete file\n")
    before = out.read_bytes()
    proc = _cli("predict", model, "--data", str(data), "--posteriors", "-o", str(out))
    while not _temporaries(tmp_path) and proc.poll() is None:  # the output is being written
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert out.read_bytes() == before
    assert not _temporaries(tmp_path)
    assert b"interrupted" in err and b"Traceback" not in err


def test_fit_outputs_appear_together_or_not_at_all(tmp_path, capsys):
    out = tmp_path / "o"
    (out / "clusters.png").mkdir(parents=True)  # the plot cannot be written
    assert main(["fit", "--example", "faithful", "-k", "2", "--seed", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "clusters.png: it is a directory" in err and err.count("\n") == 1
    assert sorted(os.listdir(out)) == ["clusters.png"]  # no model.npz or labels.csv without their plot


def test_overwriting_outputs_is_reported(tmp_path, capsys):
    argv = ["fit", "--example", "faithful", "-k", "2", "--seed", "0", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert "replaced existing" not in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "replaced existing" in out and "model.npz" in out.splitlines()[-1]
    model = str(tmp_path / "model.npz")
    assert main(["predict", model, "--example", "faithful", "-o", str(tmp_path / "p.csv")]) == 0
    assert "replaced" not in capsys.readouterr().out
    assert main(["predict", model, "--example", "faithful", "-o", str(tmp_path / "p.csv")]) == 0
    assert "(replaced the existing file)" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["output_under_a_file", "output_is_a_directory", "predict_output_is_a_directory",
                                  "bad_model_choice", "bad_k", "model_is_a_csv"])
def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys, case):
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n3,4\n5,7\n")
    if case == "output_under_a_file":
        argv, match = ["fit", str(good), "-o", str(good / "sub")], "a part of the path is a file"
    elif case == "output_is_a_directory":
        (tmp_path / "d" / "labels.csv").mkdir(parents=True)
        argv, match = ["fit", str(good), "-o", str(tmp_path / "d")], "labels.csv: it is a directory"
    elif case == "predict_output_is_a_directory":
        model = emkit.KMeans(2, random_state=0).fit(np.loadtxt(good, delimiter=",", skiprows=1)).save(
            tmp_path / "k.npz")
        argv, match = ["predict", model, "--data", str(good), "-o", str(tmp_path)], "it is a directory"
    elif case == "bad_model_choice":
        argv, match = ["fit", str(good), "--model", "nope"], "argument --model: invalid choice: 'nope'"
    elif case == "bad_k":
        argv, match = ["fit", str(good), "-k", "x"], "-k/--n-components must be an integer"
    else:
        argv, match = ["info", str(good)], "is not a readable emkit model file"
    assert main(argv) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and match in errors[0], captured.err
    assert "usage:" not in captured.err and "Traceback" not in captured.err


def test_closed_output_pipe_is_one_line(tmp_path):
    model = emkit.KMeans(2, random_state=0).fit(np.arange(20.0).reshape(10, 2)).save(tmp_path / "k.npz")
    proc = _cli("info", model, "--json")
    proc.stdout.close()  # like `| head` that has already exited
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 2
    assert err.decode().count("\n") == 1 and "output pipe closed" in err.decode(), err


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    X = np.random.default_rng(0).normal(size=(50, 2))
    path = emkit.KMeans(2, random_state=0).fit(X).save(tmp_path / "k.npz")
    before = open(path, "rb").read()

    def broken(fh, **arrays):
        fh.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(KeyboardInterrupt):
        emkit.KMeans(3, random_state=0).fit(X).save(path)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["k.npz"]


def test_outputs_group_commits_together_and_keeps_file_modes(tmp_path):
    old = tmp_path / "a.txt"
    old.write_text("old")
    os.chmod(old, 0o640)
    with pytest.raises(RuntimeError):
        with Outputs() as out:
            open(out.path(old), "w").write("new")
            open(out.path(tmp_path / "b.txt"), "w").write("new")
            raise RuntimeError
    assert old.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]
    with Outputs() as out:
        open(out.path(old), "w").write("new")
        open(out.path(tmp_path / "b.txt"), "w").write("new")
    assert old.read_text() == "new" and out.overwritten == [str(old)]
    assert os.stat(old).st_mode & 0o777 == 0o640
    with atomic_path(tmp_path / "c.txt") as tmp:
        open(tmp, "w").write("c")
    assert os.stat(tmp_path / "c.txt").st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_classify_outputs_appear_together(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "labelled.csv"
    X = np.r_[rng.normal(0, 1, (40, 2)), rng.normal(5, 1, (40, 2))]
    with open(path, "w") as f:
        f.write("x,y,label\n")
        for row, label in zip(X, np.repeat(["a", "b"], 40)):
            f.write(f"{row[0]},{row[1]},{label}\n")
    out = tmp_path / "o"
    (out / "regions.png").mkdir(parents=True)
    argv = ["classify", "fit", str(path), "--label-column", "label", "--seed", "0", "-o", str(out)]
    assert main(argv) == 2
    assert "regions.png: it is a directory" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["regions.png"]
    os.rmdir(out / "regions.png")
    assert main(argv) == 0 and main(argv) == 0
    assert "replaced existing" in capsys.readouterr().out
