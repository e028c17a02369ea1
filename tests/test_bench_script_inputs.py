"""The Python tools under scripts/ (benches, the offline data layout) refuse a mistake in one
line and exit code 2 before they measure or write anything: an audit found tracebacks after
the whole measurement (a --steps 0 divided by zero, an --out under a file failed at the
write), a bench with no error handling at all, and an empty --from folder sent to the
network with a flag the tool does not have."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("script, args, said", [
    ("bench_kernels.py", ["--steps", "0"], "--steps must be at least 1, got 0"),
    ("bench_kernels.py", ["--repeats", "0"], "--repeats must be at least 1, got 0"),
    ("bench_kernels.py", ["--threads", "0"], "--threads must be at least 1, got 0"),
    ("bench_kernels.py", ["--out", "@file"], "cannot write results to @file/kernels: @file is "
                                             "not a writable folder; pass --out to a writable "
                                             "folder"),
    ("bench_sfo.py", ["--out", "@file"], "cannot write results to @file/bench: @file is not a "
                                         "writable folder"),
    ("bench_sfo.py", ["--warmup", "-1"], "--warmup must be at least 0, got -1"),
    # an unset "$OUT": written into the working folder (the repository) without a word
    ("bench_kernels.py", ["--out", ""], "argument --out: an empty name; name a folder"),
    ("bench_sfo.py", ["--data-dir", " "], "argument --data-dir: an empty name; name a folder"),
    ("bench_cnn_batching.py", ["--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
    ("bench_cnn_batching.py", ["--groups", "1", "0"], "--groups must be at least 1, got 0"),
    ("bench_cnn_batching.py", ["--batch", "0"], "--batch must be at least 1, got 0"),
    ("bench_cnn_batching.py", ["--repeats", "0"], "--repeats must be at least 1, got 0"),
    ("offline_data.py", ["--from", "@empty", "--only", "mnist", "--out", "@tmp/data"],
     "offline_data: --from @empty has no mnist files (train-images-idx3-ubyte.gz, "),
    # one MNIST file of four: a bundle of it failed on the lent machine, at its cost
    ("offline_data.py", ["--from", "@one-mnist", "--only", "mnist", "--out", "@tmp/data"],
     "offline_data: --from @one-mnist lacks train-labels-idx1-ubyte.gz, "
     "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz of the mnist files, nor --out "),
    ("offline_data.py", ["--from", "@data", "--only", "mnist", "--out", "@file/data"],
     "offline_data: cannot make @file/data (Not a directory); pass --out"),
    # a download cut short: copied into --out, where fetch said to download it again
    # (offline), and a run with the source mended kept the copy
    ("offline_data.py", ["--from", "@cut-mnist", "--only", "mnist", "--out", "@tmp/data"],
     "offline_data: @cut-mnist/train-labels-idx1-ubyte.gz is not the official "
     "train-labels-idx1-ubyte.gz (MD5 "),
    # raised to the minimum without a word
    ("bench_kernels.py", ["--warmup", "-1"], "--warmup must be at least 4, got -1"),
    # argparse's own refusals: one line, where its usage block came first (3 to 8 lines)
    ("bench_kernels.py", ["--scale", "huge"], "bench_kernels.py: error: argument --scale: "
                                              "invalid choice: 'huge'"),
    ("offline_data.py", ["--from", "@tmp/nowhere", "--out", "@tmp/data"],
     "offline_data.py: error: @tmp/nowhere is not a folder; see offline_data.py --help"),
    ("bench_sfo.py", ["--steps", "1.5"], "bench_sfo.py: error: argument --steps: invalid int"),
    # a cut-short .tar.xz in a prepare.py folder: a traceback of lzma's, an empty --out left
    ("offline_data.py", ["--from", "@broken-xz", "--only", "imdb", "--out", "@tmp/data"],
     "offline_data: @broken-xz/aclImdb_labelled_text.tar.xz is not a whole xz file ("),
    ("bench_startup.py", ["--repeat", "0"], "--repeat must be at least 1, got 0"),
    ("bench_startup.py", ["--data-dir", "@tmp/nowhere"],
     "bench_startup: error: --data-dir @tmp/nowhere is not a folder; pass the data folder"),
    # found after every timing, exit 1, and after trying the network from inside the bench
    ("bench_startup.py", ["--data-dir", "@empty"],
     "bench_startup: error: the smoke run it times reads MNIST, and @empty/MNIST/raw lacks "
     "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
     "t10k-labels-idx1-ubyte.gz; run 'adamrepro fetch mnist'"),
], ids=["kernels-steps", "kernels-repeats", "kernels-threads", "kernels-out-under-a-file",
        "sfo-out-under-a-file", "sfo-warmup", "kernels-empty-out", "sfo-empty-data-dir",
        "cnn-device", "cnn-groups", "cnn-batch",
        "cnn-repeats", "offline-empty-from", "offline-one-mnist-file",
        "offline-out-under-a-file", "offline-cut-mnist-file", "kernels-warmup",
        "kernels-scale", "offline-no-from", "sfo-steps", "offline-broken-xz",
        "startup-repeat", "startup-no-data", "startup-no-mnist"])
def test_a_tool_refuses_a_mistake_in_one_line_before_any_work(script, args, said, tmp_path,
                                                              data_dir):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken-xz"
    broken.mkdir()
    (broken / "prepare.py").write_text("raise SystemExit('never run')\n")
    (broken / "aclImdb_labelled_text.tar.xz").write_bytes(b"\xfd7zXZ\x00" + bytes(200))
    one = tmp_path / "one-mnist"
    one.mkdir()
    shutil.copyfile(data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz",
                    one / "train-images-idx3-ubyte.gz")
    cut = tmp_path / "cut-mnist"
    cut.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        whole = (data_dir / "MNIST" / "raw" / name).read_bytes()
        (cut / name).write_bytes(whole[:len(whole) // 2] if "train-labels" in name else whole)
    places = {"@file": str(tmp_path / "a-file"), "@empty": str(tmp_path / "empty"),
              "@one-mnist": str(one), "@cut-mnist": str(cut),
              "@broken-xz": str(broken), "@tmp": str(tmp_path), "@data": str(data_dir)}

    def placed(text: str) -> str:
        for mark, place in places.items():
            text = text.replace(mark, place)
        return text

    before = sorted(tmp_path.rglob("*"))
    benches = ["logreg_mnist", "--device", "cpu", "--scale", "smoke", "--data-dir",
               str(data_dir)] if script == "bench_kernels.py" else []
    if script == "bench_sfo.py":
        benches = ["--device", "cpu", "--hidden", "8", "--steps", "1", "--data-dir",
                   str(data_dir)]
    if "--out" not in args and script in ("bench_kernels.py", "bench_sfo.py"):
        benches += ["--out", str(tmp_path / "out")]  # never the repository's results/
    done = tool(script, *benches, *(placed(arg) for arg in args))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert placed(said) in done.stderr and done.stdout == "", (done.stdout, done.stderr)
    # each script's line names it (argparse's by its file name; bench_kernels said
    # "adamrepro")
    assert done.stderr.startswith((f"{script.removesuffix('.py')}: ", f"{script}: ")), \
        done.stderr
    assert sorted(tmp_path.rglob("*")) == before  # nothing measured into, or made


@pytest.mark.parametrize("args, said", [
    (["--data"], "offline_bundle: --data needs a value; usage: "),  # "$2: unbound variable"
    (["--data", "@shared", "--dataset", "mnist"], "unknown argument --dataset; usage: "),
    (["--data", "@shared", "--datasets", "mnist mnsit"], "unknown dataset mnsit; known: "),
    (["--data", "@empty", "--datasets", "mnist"], "@empty has no mnist files ("),
    (["--data", "@shared", "--max-mib", "abc"], "--max-mib abc is not a whole number of MiB"),
    (["--data", "@shared", "--python", "9.9"], "--python 9.9 is not a Python version such as"),
    (["--data", "@shared", "--datasets", " "], "--datasets names none; give some of: "),
    # a --data relative to the folder it is called from (it was read from the repo root:
    # "--data empty is not a folder" of a folder that is there)
    (["--data", "empty", "--datasets", "mnist"], "@empty has no mnist files ("),
    # blanks other than spaces passed the check, and a bundle with no data was built; a
    # `*` named the repo's files ("unknown dataset Makefile")
    (["--data", "@shared", "--datasets", "\t\n"], "--datasets names none; give some of: "),
    (["--data", "@shared", "--datasets", "*"], "unknown dataset *; known: "),
], ids=["no-value", "misspelt-flag", "unknown-dataset", "no-files", "max-mib", "python",
        "no-dataset", "relative-data", "blank-datasets", "glob-datasets"])
def test_offline_bundle_refuses_before_it_touches_the_last_bundle(args, said, tmp_path):
    """Each was found after `rm -rf .bundle` and the wheels' download (a half-built bundle
    left that looked ready to carry), or was a bash error with exit 1."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "offline_bundle.sh", repo / "scripts")
    (repo / ".bundle").mkdir()
    (repo / ".bundle" / "datasets").write_text("mnist\n")  # the last good bundle
    (tmp_path / "empty").mkdir()
    shared = tmp_path / "shared"  # a prepare.py folder's MNIST
    (shared / "MNIST").mkdir(parents=True)
    places = {"@shared": str(shared), "@empty": str(tmp_path / "empty")}
    done = subprocess.run(["bash", str(repo / "scripts" / "offline_bundle.sh"),
                           *(places.get(arg, arg) for arg in args)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert said.replace("@empty", places["@empty"]) in done.stderr, done.stderr
    assert sorted(p.name for p in repo.iterdir()) == [".bundle", "scripts"]
    assert (repo / ".bundle" / "datasets").read_text() == "mnist\n"


def test_bench_startup_times_the_imports_the_exit_and_two_commands(data_dir):
    done = tool("bench_startup.py", "--repeat", "1", "--data-dir", str(data_dir))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bench_startup on ") and "median of 1" in lines[0], lines
    rows = {line[:46].strip(): line[46:] for line in lines[1:]}
    assert list(rows) == ["import torch", "import torch._dynamo after torch",
                          "exit after import torch", "exit after import torch, objects frozen",
                          "adamrepro list optimizers",
                          "adamrepro run logreg_mnist --scale smoke"], lines
    for label, text in rows.items():
        seconds = [float(s) for s in re.findall(r"(\d+\.\d\d) s", text)]
        # an exit may round to 0.00 s on a fast machine; nothing else can
        assert seconds and (seconds[0] > 0 or label.startswith("exit")), (label, text)
        if "adamrepro" in label:  # the exit is part of the whole command
            assert len(seconds) == 2 and 0 <= seconds[1] < seconds[0], (label, text)


@pytest.mark.parametrize("script", ["bench_cnn_batching", "bench_kernels", "bench_sfo",
                                    "offline_data"])  # bench_startup: torch in its main
def test_a_ctrl_c_while_a_script_imports_is_one_line(script):
    """Each script imports torch (seconds) before its main runs: a Ctrl-C then was a
    KeyboardInterrupt traceback. Sent once torch's library is mapped (script_start.py is
    imported before), it is one line, exit 130."""
    import signal
    import time

    started = subprocess.Popen([sys.executable, str(ROOT / "scripts" / f"{script}.py"),
                                "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and started.poll() is None:
        try:
            if "libtorch" in Path(f"/proc/{started.pid}/maps").read_text():
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.002)
    if started.poll() is None:
        started.send_signal(signal.SIGINT)
    _, stderr = started.communicate(timeout=60)
    assert started.returncode == 130, stderr[-2000:]
    assert stderr == f"{script}: interrupted while starting; nothing was written\n", stderr
