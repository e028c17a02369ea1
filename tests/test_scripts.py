"""scripts/reproduce_paper.sh: with BUDGET_MINUTES it stops cleanly (exit 3) after advancing
the first experiment, and run again it finishes what is left, skipping what is done.
scripts/offline_data.py: a prepare.py folder whose archive travels as .tar.xz (as
scripts/offline_bundle.sh packs IMDB) lays out the same files, and the folder is not written."""

from __future__ import annotations

import json
import lzma
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parent.parent


def reproduce(out: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce_paper.sh")], capture_output=True, text=True,
        env={**os.environ, "OUT": str(out), "SCALE": "smoke", "DEVICE": "cpu",
             "ADAMREPRO": f"{sys.executable} -m adamrepro", "ADAMREPRO_DATA": str(data_dir),
             "RUN_FLAGS": "--quiet",
             "CONFIGS": "configs/logreg_mnist.yaml configs/logreg_imdb.yaml", **env})


def test_a_spent_budget_stops_cleanly_and_the_next_call_finishes(tmp_path, data_dir):
    first = reproduce(tmp_path, data_dir, BUDGET_MINUTES="0.0001")
    assert first.returncode == 3, first.stderr
    # a command always trains something: logreg_mnist's first group, up to a checkpoint or
    # to its end (a smoke group may finish before its first checkpoint is due)
    assert list((tmp_path / "logreg_mnist" / "runs").glob("*.*")), first.stdout
    assert "time budget spent" in first.stdout
    assert not (tmp_path / "logreg_imdb").exists()
    second = reproduce(tmp_path, data_dir)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "report.md").is_file()
    for name in ("logreg_mnist", "logreg_imdb"):
        best = pd.read_csv(tmp_path / name / "best.csv")
        assert len(best) >= 4 and best["final_train_loss"].notna().all()


def test_a_copy_that_is_not_the_official_data_is_refused_before_any_training(tmp_path,
                                                                            data_dir):
    """This project's CIFAR-10 went through JPEG: without RUN_FLAGS=--unverified-data its
    experiment was refused when its turn came, at paper scale after hours of the others'
    training (the CNN runs last). Fetch names it; the script refuses it before training."""
    done = reproduce(tmp_path, data_dir,
                     CONFIGS="configs/logreg_mnist.yaml configs/cnn_cifar10.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        "reproduce_paper: the data folder's cifar10 is not the official data (fetch said "
        "why, above); pass RUN_FLAGS=--unverified-data for a copy you trust, or put the "
        "official files in place\n")
    assert "cifar10 " in done.stdout and not (tmp_path / "logreg_mnist").exists()


def test_a_data_folder_that_is_a_file_is_named_by_the_variable_its_user_sets(tmp_path,
                                                                          data_dir):
    """The script takes its data folder from ADAMREPRO_DATA and passes fetch no flag, yet
    fetch's refusal told its user to give --data-dir, which the script does not take."""
    (tmp_path / "a-file").write_text("")
    done = reproduce(tmp_path / "out", data_dir, ADAMREPRO_DATA=str(tmp_path / "a-file"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"reproduce_paper: ADAMREPRO_DATA={tmp_path / 'a-file'} is a file; give "
        f"ADAMREPRO_DATA a data folder (new or holding the datasets), or leave it unset\n")
    assert done.stdout == "" and not (tmp_path / "out").exists()


def test_runs_left_by_split_to_fit_do_not_stop_the_next_experiment(tmp_path, data_dir):
    """An experiment that exits 3 with most of the budget left (`--split-to-fit` left every
    run of it, a million passes each, for the next command) does not end the script: the
    next experiment trains with what is left, and the script still says work is left."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "logreg_mnist.yaml").read_text())
    config["scales"]["smoke"] = {"epochs": 1_000_000, "train_size": 512, "test_size": 256,
                                 "extend_edges": 0}
    endless = tmp_path / "logreg_mnist.yaml"
    endless.write_text(yaml.safe_dump(config))
    done = reproduce(tmp_path / "out", data_dir, BUDGET_MINUTES="10",
                     RUN_FLAGS="--quiet --split-to-fit",
                     CONFIGS=f"{endless} configs/logreg_imdb.yaml")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "left for the next command" in done.stderr
    assert not (tmp_path / "out" / "logreg_mnist" / "curves.csv").exists()
    best = pd.read_csv(tmp_path / "out" / "logreg_imdb" / "best.csv")
    assert best["final_train_loss"].notna().all()


# A stand-in for ../shared/data/prepare.py's IMDB step: it reads the gzip archive beside its own
# resolved path, strictly as gzip ("r:gz"), so an xz or plain tar under that name fails.
PREPARE = """
import argparse, tarfile
from pathlib import Path
HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser()
parser.add_argument("--out", type=Path)
parser.add_argument("--only", action="append")
args = parser.parse_args()
assert args.only == ["imdb"], args.only
with tarfile.open(HERE / "aclImdb_labelled_text.tar.gz", "r:gz") as tar:
    tar.extractall(args.out, filter="data")
"""


def test_offline_data_into_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "offline_data.py"), "--from", str(tmp_path),
         "--out", str(tmp_path / "a-file")], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "a-file is a file, not a data folder" in done.stderr


def test_offline_data_copies_the_official_downloads_whole_and_checked(tmp_path, data_dir):
    """A folder of official downloads (~/Downloads) laid out for --only mnist: each file is
    the official one, never a damaged copy found first (a download cut short, kept in a
    subfolder), and no temporary file is left. The first of them was copied whatever its
    MD5: `fetch` then called it corrupt and said to download it, offline."""
    raw = data_dir / "MNIST" / "raw"
    source = tmp_path / "downloads"
    (source / "a-cut-short").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(raw / name, source / name)
    whole = (raw / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (source / "a-cut-short" / "t10k-labels-idx1-ubyte.gz").write_bytes(whole[:1000])
    out = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "offline_data.py"), "--from", str(source),
         "--only", "mnist", "--out", str(out)], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"mnist      {out / 'MNIST' / 'raw'}\n"
    copied = sorted(p.name for p in (out / "MNIST" / "raw").iterdir())
    assert copied == sorted(p.name for p in source.iterdir() if p.is_file())
    for name in copied:
        assert (out / "MNIST" / "raw" / name).read_bytes() == (raw / name).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["MNIST"]


def test_offline_data_reads_a_prepare_folder_whose_archive_travels_as_xz(tmp_path, data_dir):
    root = data_dir / "aclImdb"
    reviews = [path for split in ("train", "test") for label in ("pos", "neg")
               for path in sorted((root / split / label).iterdir())[:5]]
    source = tmp_path / "bundle"
    source.mkdir()
    (source / "prepare.py").write_text(PREPARE)
    with lzma.open(source / "aclImdb_labelled_text.tar.xz", "wb", preset=0) as raw, \
            tarfile.open(fileobj=raw, mode="w") as tar:
        for path in reviews:
            tar.add(path, arcname=str(path.relative_to(data_dir)))
    before = sorted(p.name for p in source.iterdir())
    source.chmod(stat.S_IRUSR | stat.S_IXUSR)  # read-only, as a mounted copy may be
    out = tmp_path / "data"
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "offline_data.py"), "--from", str(source),
             "--only", "imdb", "--out", str(out)], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        source.chmod(stat.S_IRWXU)
    assert done.returncode == 0, done.stderr
    for path in reviews:
        assert (out / path.relative_to(data_dir)).read_bytes() == path.read_bytes()
    assert sorted(p.name for p in source.iterdir()) == before
    assert sorted(p.name for p in out.iterdir()) == ["aclImdb"]  # no staging folder left


def gpu_session(tmp_path: Path, data_dir: Path, *stages: str,
                **env: str) -> subprocess.CompletedProcess:
    """scripts/gpu_session.sh on the CPU at smoke scale, its results in tmp_path/results and
    its archive at tmp_path/session.tar.gz unless `env` says otherwise, with no time left
    for any stage (SESSION_MINUTES 0.5, nothing kept for packing). Its bundle is an empty
    folder unless `env` names one: the checkout's own .bundle/, left by a developer who
    packed two datasets for a GPU job, made five of these tests refuse every experiment on
    the third (each such stage exits 2 before anything runs)."""
    empty = tmp_path / "empty-bundle"
    empty.mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_session.sh"), *stages],
        capture_output=True, text=True,
        env={**os.environ, "DEVICE": "cpu", "SCALE": "smoke", "PYTHON": sys.executable,
             "BUNDLE": str(empty),
             "ADAMREPRO_DATA": str(data_dir), "RESULTS": str(tmp_path / "results"),
             "ARCHIVE": str(tmp_path / "session.tar.gz"), "SESSION_MINUTES": "0.5",
             "PACK_SECONDS": "0", **env})


def test_gpu_session_skips_what_its_time_limit_leaves_no_room_for_and_still_packs(
        tmp_path, data_dir):
    """SESSION_MINUTES is the job's own limit: a stage that would get less than a minute
    before packing is skipped, said so, and the archive is written all the same."""
    archive = tmp_path / "session.tar.gz"
    # a lent machine's OUT, the folder that comes back: not the results folder
    done = gpu_session(tmp_path, data_dir, "sfo", "paper", OUT=str(tmp_path / "back"))
    assert done.returncode == 1, done.stdout + done.stderr
    for stage in ("sfo", "paper"):
        assert f"== stage {stage} skipped: " in done.stdout, done.stdout
    assert not (tmp_path / "results" / "bench").exists()  # nothing of either stage ran
    with tarfile.open(archive) as tar:
        assert any(name.endswith("gpu-session.log") for name in tar.getnames())
    assert not (tmp_path / "back").exists()


def test_gpu_session_prints_the_release_of_every_package_it_runs_on(tmp_path, data_dir):
    """A lent machine runs the repo from PYTHONPATH, so pyproject's floors never gate its own
    packages: the job prints their releases, the first thing to compare when a stage fails
    there and passes on a CPU."""
    from importlib.metadata import version
    done = gpu_session(tmp_path, data_dir, "sfo")
    assert "Traceback" not in done.stderr, done.stderr
    [line] = [row for row in done.stdout.splitlines() if row.startswith("python ")]
    releases = dict(item.rsplit(" ", 1) for item in line.split(" | "))
    assert releases.pop("python") == platform.python_version()
    assert releases == {name: version(name) for name in
                        ("numpy", "pandas", "matplotlib", "pydantic", "typer", "click", "rich",
                         "PyYAML", "pytest")}


def test_gpu_session_s_tests_stage_runs_every_cuda_test_of_the_suite(tmp_path, data_dir):
    """The tests stage picks the modules holding CUDA tests (the others may import dev extras
    a GPU machine lacks); it once missed those in tests/optim/. On a CPU each one skips, so
    the stage's count of skipped tests is the count of CUDA tests it found."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda",
         "-p", "no:cacheprovider", "tests"], cwd=ROOT, capture_output=True, text=True)
    counts = collected.stdout.strip().splitlines()[-1]  # "34/685 tests collected (...)"
    cuda_tests = int(counts.split("/")[0])
    assert cuda_tests > 0, collected.stdout
    done = gpu_session(tmp_path, data_dir, "tests", SESSION_MINUTES="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{cuda_tests} skipped" in done.stdout, done.stdout
    # pytest's whole output travels back in the archive, tracebacks included
    with tarfile.open(tmp_path / "session.tar.gz") as tar:
        [log] = [m for m in tar.getmembers() if m.name.endswith("cuda-tests.log")]
        assert f"{cuda_tests} skipped" in tar.extractfile(log).read().decode()


def test_gpu_session_refuses_a_cuda_job_where_torch_sees_no_gpu(tmp_path, data_dir):
    """DEVICE=cuda (the default) on a machine whose torch sees no GPU: the tests stage
    passed with every CUDA test skipped, and a lent machine's job said it had run them.
    Refused in one line, exit 2, before any stage. (This machine has no GPU: the suite's
    CUDA tests are its only skips.)"""
    import torch

    assert not torch.cuda.is_available()
    done = gpu_session(tmp_path, data_dir, "tests", DEVICE="cuda", SESSION_MINUTES="")
    assert done.returncode == 2, done.stdout + done.stderr
    # the job's log (stdout and stderr together, as it travels back in the archive)
    assert ("gpu_session: DEVICE=cuda, but torch sees no CUDA device here: the CUDA tests "
            "would all skip and each stage fail; run it on a GPU machine, or DEVICE=cpu "
            "SCALE=smoke to try the job on a CPU\n") in done.stdout, done.stdout
    assert "== stage tests" not in done.stdout and "skipped" not in done.stdout


def test_gpu_session_reads_relative_paths_from_where_it_was_started(tmp_path, data_dir):
    """RESULTS=rel ARCHIVE=rel.tar.gz from another folder: both landed in the repository
    (the script works from there), unlike reproduce_paper.sh's and measure_precision.sh's."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_session.sh"), "sfo"], cwd=tmp_path,
        capture_output=True, text=True,
        env={**os.environ, "DEVICE": "cpu", "SCALE": "smoke", "PYTHON": sys.executable,
             "ADAMREPRO_DATA": str(data_dir), "RESULTS": "rel", "ARCHIVE": "rel.tar.gz",
             "SESSION_MINUTES": "0.5", "PACK_SECONDS": "0"})
    assert done.returncode == 1, done.stdout + done.stderr  # sfo skipped: no time left
    assert (tmp_path / "rel.tar.gz").is_file() and (tmp_path / "rel").is_dir(), done.stdout
    assert not (ROOT / "rel.tar.gz").exists() and not (ROOT / "rel").exists()


def test_gpu_session_runs_stages_joined_by_plus_at_once_each_with_its_own_log(
        tmp_path, data_dir):
    """`tests+sfo=...`: the stages run side by side (correctness checks sharing a GPU with
    curve measurements); each writes its own log, shown once all are done, and both logs
    and what the stages wrote travel in the archive."""
    done = gpu_session(tmp_path, data_dir, "tests+sfo", SESSION_MINUTES="")
    assert done.returncode == 0, done.stdout + done.stderr
    results = tmp_path / "results"
    assert "skipped" in (results / "stage-tests.log").read_text()
    assert "ms/step" in (results / "stage-sfo.log").read_text()
    assert list((results / "bench").glob("sfo-cpu-*.json"))
    with tarfile.open(tmp_path / "session.tar.gz") as tar:
        names = tar.getnames()
    for name in ("stage-tests.log", "stage-sfo.log", "cuda-tests.log"):
        assert any(n.endswith(name) for n in names), names


def test_gpu_session_s_kernels_stage_times_the_experiments_and_variants_named(
        tmp_path, data_dir):
    """kernels=EXPERIMENTS (comma-separated) with KERNEL_VARIANTS: the per-step speed of a
    precision on the experiments named alone, one table each, none compiled (what a short
    GPU job can afford)."""
    done = gpu_session(tmp_path, data_dir, "kernels=logreg_mnist,logreg_imdb",
                       SESSION_MINUTES="", KERNEL_VARIANTS="plain bf16", KERNEL_STEPS="2",
                       OMP_NUM_THREADS="2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(2 torch threads)" in done.stdout  # two, not "2 torch thread"
    tables = sorted((tmp_path / "results" / "kernels").iterdir())
    assert [t.name for t in tables] == ["logreg_imdb-cpu-smoke.csv",
                                        "logreg_mnist-cpu-smoke.csv"]
    for table in tables:
        frame = pd.read_csv(table)
        assert list(frame["variant"]) == ["plain", "bf16"]
        assert list(frame["verdict"]) == ["same", "other precision"]
        assert (frame["steps"] == 2).all()


def test_gpu_session_refuses_an_unknown_stage_before_running_any(tmp_path, data_dir):
    """A typo in the last stage costs no device time: nothing runs, one line says so."""
    done = gpu_session(tmp_path, data_dir, "sfo", "tests+bench=mlp+sfoo",
                       SESSION_MINUTES="")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown stage sfoo" in done.stderr.strip().splitlines()[-1], done.stderr
    assert not (tmp_path / "results" / "bench").exists()


def test_gpu_session_refuses_an_archive_inside_the_folder_it_packs(tmp_path, data_dir):
    done = gpu_session(tmp_path, data_dir, "sfo",
                       ARCHIVE=str(tmp_path / "results" / "a.tar.gz"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "lies inside RESULTS" in lines[0], done.stderr
    assert not (tmp_path / "results").exists()  # nothing written


# A mistake in gpu_session.sh's command or environment: (stages, environment, what its one
# line names). Each ran the setup first, some then every stage before theirs, some were
# silently taken (an empty stage as the paper stage, SESSION_MINUTES=abc as no time left,
# sfo=huge as sfo); "{tmp}" is the test's folder.
GPU_SESSION_MISTAKES = [
    pytest.param([""], {}, "empty stage name", id="empty-stage"),
    pytest.param(["=sfo"], {}, "'=sfo' has no name", id="nameless-stage"),
    pytest.param(["sfo+"], {}, "'sfo+'", id="empty-joined-stage"),
    pytest.param(["sfo tests"], {}, "'sfo tests'", id="stages-in-one-word"),
    pytest.param(["sfo=huge"], {}, "sfo=huge", id="part-of-sfo"),
    pytest.param(["tests=mlp"], {}, "tests=mlp", id="part-of-tests"),
    pytest.param(["sfo", "kernels=nope"], {}, "kernels=nope", id="kernels-unknown"),
    pytest.param(["paper=nope"], {}, "paper=nope", id="paper-unknown"),
    pytest.param(["precision=mlp,nope"], {}, "precision=mlp,nope", id="precision-unknown"),
    pytest.param(["bench=../configs/mlp"], {}, "bench=../configs/mlp", id="bench-path"),
    pytest.param(["bench=logreg_mnist:fp16"], {}, "fp16", id="bench-precision"),
    pytest.param(["paper="], {}, "'paper='", id="paper-empty-part"),
    pytest.param(["sfo"], {"BENCH_CONFIGS": "mlp nope"}, "BENCH_CONFIGS", id="bench-configs"),
    pytest.param(["sfo"], {"PRECISION_EXPERIMENTS": "nope"}, "PRECISION_EXPERIMENTS",
                 id="precision-experiments"),
    pytest.param(["sfo"], {"CONFIGS": "configs/nope.yaml"}, "CONFIGS", id="configs"),
    pytest.param(["sfo"], {"ARCHIVE": "{tmp}/nodir/a.tar.gz"}, "ARCHIVE=", id="archive-nodir"),
    pytest.param(["sfo"], {"ARCHIVE": "/proc/a.tar.gz"}, "ARCHIVE=", id="archive-unwritable"),
    pytest.param(["sfo"], {"ARCHIVE": "{tmp}"}, "ARCHIVE=", id="archive-folder"),
    pytest.param(["sfo"], {"RESULTS": "{tmp}/afile"}, "RESULTS=", id="results-file"),
    pytest.param(["sfo"], {"RESULTS": "{tmp}/afile/sub"}, "RESULTS=", id="results-in-file"),
    pytest.param(["sfo"], {"SESSION_MINUTES": "abc"}, "SESSION_MINUTES", id="minutes-abc"),
    pytest.param(["sfo"], {"SESSION_MINUTES": "-1"}, "SESSION_MINUTES", id="minutes-neg"),
    pytest.param(["sfo"], {"SESSION_MINUTES": "0"}, "SESSION_MINUTES", id="minutes-0"),
    pytest.param(["sfo"], {"BUDGET_MINUTES": "abc"}, "BUDGET_MINUTES", id="budget-abc"),
    pytest.param(["sfo"], {"PACK_SECONDS": "abc"}, "PACK_SECONDS", id="pack-abc"),
    pytest.param(["sfo"], {"PACK_SECONDS": "-1"}, "PACK_SECONDS", id="pack-neg"),
    pytest.param(["sfo"], {"PART_KIB": "abc"}, "PART_KIB", id="part-abc"),
    pytest.param(["sfo"], {"PART_KIB": "0"}, "PART_KIB", id="part-0"),
    pytest.param(["sfo"], {"DEVICE": "gpu"}, "DEVICE", id="device"),
    pytest.param(["sfo"], {"SCALE": "huge"}, "SCALE", id="scale"),
    pytest.param(["sfo"], {"PRECISION_SCALE": "huge"}, "PRECISION_SCALE", id="precision-scale"),
    pytest.param(["sfo"], {"BENCH_PASSES": "abc"}, "BENCH_PASSES", id="bench-passes"),
    pytest.param(["sfo"], {"KERNEL_STEPS": "0"}, "KERNEL_STEPS", id="kernel-steps"),
    pytest.param(["sfo"], {"KERNEL_STEPS_CNN": "x"}, "KERNEL_STEPS_CNN", id="kernel-steps-cnn"),
    pytest.param(["sfo"], {"SFO_STEPS": "0"}, "SFO_STEPS", id="sfo-steps"),
    pytest.param(["sfo"], {"KERNEL_VARIANTS": "plain bogus"}, "KERNEL_VARIANTS",
                 id="kernel-variants"),
    pytest.param(["sfo"], {"PRECISIONS": "fp16"}, "PRECISIONS", id="precisions"),
    pytest.param(["sfo"], {"SELECTED": "yes"}, "SELECTED", id="selected"),
    pytest.param(["sfo"], {"SEEDS": "0"}, "SEEDS", id="seeds"),
    # what measure_precision.sh refuses, refused before the setup (not after earlier stages)
    pytest.param(["sfo"], {"SEEDS": "1"}, "SEEDS=1 is not a whole number of at least 2",
                 id="one-seed"),
    pytest.param(["sfo"], {"PRECISIONS": "fp32"}, "PRECISIONS=fp32 is not one of: tf32 bf16",
                 id="precisions-fp32"),
    pytest.param(["sfo"], {"PRECISION_BASE": "{tmp}/none"}, "PRECISION_BASE", id="base"),
    pytest.param(["sfo"], {"PYTHON": "python9"}, "PYTHON", id="python"),
    # pip's words after the setup had made RESULTS and an archive; with every package there
    # the typo was ignored
    pytest.param(["sfo"], {"BUNDLE": "{tmp}/nobundle"}, "BUNDLE={tmp}/nobundle is not a folder",
                 id="bundle"),
    # the precision stage's `run` read that folder, not the one the setup filled; the paper
    # stage (reproduce_paper.sh) refused it, after the stages before it
    pytest.param(["sfo"], {"RUN_FLAGS": "--unverified-data --data-dir={tmp}/data"},
                 "RUN_FLAGS passes --data-dir, which the setup would not fill; set "
                 "ADAMREPRO_DATA=DIR instead", id="run-flags-data-dir"),
    pytest.param(["sfo"], {"ADAMREPRO_DATA": " "}, "ADAMREPRO_DATA is blank", id="data-blank"),
]


@pytest.mark.parametrize(("stages", "env", "named"), GPU_SESSION_MISTAKES)
def test_gpu_session_refuses_a_mistake_in_one_line_before_any_setup(tmp_path, data_dir,
                                                                    stages, env, named):
    """On a lent GPU a mistake found after the setup costs its device time, one found after a
    stage that stage's too, and a mistake taken silently costs the job: each is refused in
    one line naming it, exit 2, with nothing set up (the setup prints the torch version) or
    written (no results folder, no archive)."""
    (tmp_path / "afile").write_text("")
    env = {key: value.replace("{tmp}", str(tmp_path)) for key, value in env.items()}
    done = gpu_session(tmp_path, data_dir, *stages, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_session: "), done.stderr
    assert named.replace("{tmp}", str(tmp_path)) in lines[0], done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "results").exists()
    # no archive, no probe: nothing but the test's own file and gpu_session()'s empty bundle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty-bundle"]


@pytest.mark.parametrize(("stages", "env", "named"), [
    # all three datasets and the repo exceed the 64 MiB a lent machine takes: a bundle
    # without IMDB failed the paper stage (every config, Fig. 1 right's too) after the setup
    (["paper"], {}, "paper: logreg_imdb reads imdb, which {tmp}/bundle/ lacks (it holds: "
                    "mnist cifar10)"),
    (["sfo", "bench"], {"BENCH_CONFIGS": "mlp,logreg_imdb:bf16"}, "bench: logreg_imdb reads "
                                                                   "imdb"),
    # the tests stage takes no experiments: "tests=NAME" was the fix it named, and refuses
    (["tests"], {"DATASETS": "mnist imdb"}, "tests: cifar10, which {tmp}/bundle/ lacks (it "
                                            "holds: mnist imdb); leave the tests stage out, "
                                            "or bundle cifar10 too"),
    (["precision=mlp+kernels=cnn_cifar10"], {"DATASETS": "mnist"}, "kernels: cnn_cifar10 "
                                                                   "reads cifar10"),
], ids=["paper-every-config", "bench-configs", "tests", "joined"])
def test_gpu_session_refuses_a_stage_whose_data_the_bundle_lacks(tmp_path, data_dir, stages,
                                                                 env, named):
    """Refused in one line before the setup, naming the experiment, its dataset and what the
    bundle holds; stages on the bundled datasets alone are taken."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "datasets").write_text(env.pop("DATASETS", "mnist cifar10") + "\n")
    done = gpu_session(tmp_path, data_dir, *stages, BUNDLE=str(bundle), **env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
    assert done.stderr.startswith("gpu_session: ") and named.replace(
        "{tmp}", str(tmp_path)) in done.stderr, done.stderr
    assert not (tmp_path / "results").exists()
    # the same bundle takes the stages on its datasets (then skipped: no time left to run)
    taken = gpu_session(tmp_path, data_dir, "paper=mlp", BUNDLE=str(bundle))
    assert taken.returncode == 1 and "== stage paper=mlp skipped" in taken.stdout, (
        taken.stdout + taken.stderr)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_gpu_session_s_archive_unpacks_into_the_results_folder_s_name(tmp_path, data_dir,
                                                                       relative):
    """An absolute RESULTS was packed with its whole path (`tar xz` put it under ./tmp/...): a
    RESULTS outside the repo is packed by its own name, given relative (to the repo, where
    the script runs) or absolute. No stage named runs the paper stage (here skipped: no
    time left), an empty one ('') being refused."""
    results = tmp_path / "results"
    given = os.path.relpath(results, ROOT) if relative else str(results)
    done = gpu_session(tmp_path, data_dir, RESULTS=given)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "== stage paper skipped: " in done.stdout, done.stdout
    with tarfile.open(tmp_path / "session.tar.gz") as tar:
        names = tar.getnames()
    assert "results/gpu-session.log" in names, names
    assert all(name == "results" or name.startswith("results/") for name in names), names


def test_gpu_session_packs_when_its_process_group_is_sent_sigterm(tmp_path, data_dir):
    """What `timeout`, a preemption or a Ctrl-C does: the signal to the whole process group
    mid-stage. The log's tee died with it and the pack died writing to it, or the script
    died before packing; now the stages are stopped and the archive is written, exit 143."""
    import signal
    import time

    results = tmp_path / "results"
    job = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "gpu_session.sh"), "kernels=mlp"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "DEVICE": "cpu", "SCALE": "smoke", "PYTHON": sys.executable,
             "ADAMREPRO_DATA": str(data_dir), "RESULTS": str(results),
             "ARCHIVE": str(tmp_path / "session.tar.gz")})
    log = results / "gpu-session.log"
    deadline = time.monotonic() + 120
    while "== stage kernels=mlp" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and job.poll() is None, job.communicate()[0]
        time.sleep(0.05)
    time.sleep(1.0)  # into the stage's command
    os.killpg(job.pid, signal.SIGTERM)
    said = job.communicate(timeout=60)[0]
    assert job.returncode == 143, said
    assert "== SIGTERM at " in said and "packing" in said, said
    # the stages end within a second of their SIGTERM; the wait for them is capped at 10 s,
    # which it always ran out when its listing of them counted itself
    stopped = int(said.split("== SIGTERM at ")[1].split(" s")[0])
    packed = int(said.split(" s in all; packing")[0].rsplit("== ", 1)[1])
    assert packed - stopped < 10, said
    with tarfile.open(tmp_path / "session.tar.gz") as tar:
        [packed] = [m for m in tar.getmembers() if m.name.endswith("gpu-session.log")]
        assert "stopping the stages, then packing" in tar.extractfile(packed).read().decode()
    time.sleep(0.5)
    stages = subprocess.run(["pgrep", "-f", f"bench_kernels.py .*--out {results}"],
                            capture_output=True, text=True).stdout.split()
    assert not stages, "a stage outlived the job"


def test_gpu_session_exits_non_zero_when_packing_fails(tmp_path, data_dir):
    """The archive is what comes back from a lent machine: when packing fails (here its
    folder is gone by then, removed by the PYTHON the setup runs first), the job says so and
    exits 1 though its stage succeeded; it exited 0, its results lost."""
    folder = tmp_path / "back"
    folder.mkdir()
    python = tmp_path / "python"
    python.write_text(f"#!/usr/bin/env bash\nrm -rf '{folder}'\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    done = gpu_session(tmp_path, data_dir, "sfo", SESSION_MINUTES="", SFO_STEPS="2",
                       PYTHON=str(python), ARCHIVE=str(folder / "gpu.tar.gz"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert list((tmp_path / "results" / "bench").glob("sfo-cpu-*.json"))  # the stage ran
    assert "gpu_session: packing" in done.stdout and "failed" in done.stdout, done.stdout
    assert not folder.exists()


def test_an_xz_archive_reads_without_pythons_lzma_through_the_xz_command(tmp_path,
                                                                         monkeypatch):
    """A lent machine's Python may be built without lzma: the xz command reads it then."""
    import importlib.util

    payload = os.urandom(1 << 16) * 8
    path = tmp_path / "a.tar.xz"
    path.write_bytes(lzma.compress(payload))
    spec = importlib.util.spec_from_file_location("offline_data",
                                                  ROOT / "scripts" / "offline_data.py")
    offline_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(offline_data)
    monkeypatch.setitem(sys.modules, "lzma", None)  # `import lzma` now fails
    with offline_data.xz_reader(path) as stream:
        assert type(stream).__module__ != "lzma"
        assert stream.read() == payload


def test_gpu_session_splits_an_archive_too_large_to_come_back(tmp_path, data_dir):
    """A lent machine returns files of at most 16 MiB: a larger archive comes in parts that
    `cat` joins (here parts of 16 KiB, of an archive of the committed results). An earlier
    job's part is removed first: `cat ARCHIVE.part*` joined it to this job's, a broken
    archive."""
    archive = tmp_path / "session.tar.gz"
    shutil.copytree(ROOT / "results" / "logreg_mnist", tmp_path / "results" / "logreg_mnist")
    stale = tmp_path / "session.tar.gz.part999"
    stale.write_bytes(b"an earlier job's last part")
    done = gpu_session(tmp_path, data_dir, "sfo", PART_KIB="16")
    assert not stale.exists()
    assert done.returncode == 1, done.stdout + done.stderr  # the stage had no time left
    parts = sorted(tmp_path.glob("session.tar.gz.part*"))
    assert len(parts) > 1 and not archive.exists()
    assert all(part.stat().st_size <= 16 * 1024 for part in parts)
    joined = tmp_path / "joined.tar.gz"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(joined) as tar:
        names = tar.getnames()
    assert any(name.endswith("logreg_mnist/curves.csv") for name in names), names


def test_measure_precision_trains_the_selected_points_alone_with_fp32_s_masks(tmp_path,
                                                                               data_dir, cli):
    """SELECTED (the default): after the fp32 sweep, only each method's selected point is
    trained, at fp32 again and at bf16, in the same groups, so the MLP's dropout masks are
    equal and bf16 moves the cost by its rounding alone, far less than a second seed does.
    `compare` refuses the whole sweep against those points (other groups, other masks)."""
    out = tmp_path / "precision"
    command = f"{sys.executable} -m adamrepro"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "measure_precision.sh"), "mlp"], capture_output=True,
        text=True, env={**os.environ, "SCALE": "smoke", "DEVICE": "cpu", "OUT": str(out),
                        "ADAMREPRO": command, "ADAMREPRO_DATA": str(data_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    best = pd.read_csv(out / "fp32" / "mlp" / "best.csv")
    whole = pd.read_csv(out / "fp32" / "mlp" / "curves.csv")
    for side in ("fp32-selected", "bf16"):
        curves = pd.read_csv(out / side / "mlp" / "curves.csv")
        assert curves["run_id"].nunique() == 2 * len(best) < whole["run_id"].nunique()
    again = pd.read_csv(out / "fp32-selected" / "mlp" / "best.csv")
    assert sorted(again["point_id"]) == sorted(best["point_id"])
    rows = pd.read_csv(out / "bf16" / "compare" / "mlp.csv")
    assert sorted(rows["method"]) == sorted(best["method"])
    assert (rows["deviation"] > 0).all()
    assert (rows["deviation"] < rows["seed_spread"] / 10).all(), rows
    # The refusals, in this process (the script's commands above are the subprocesses).
    code, _, said = cli("compare", out / "fp32", out / "bf16")
    assert code == 2 and "--only-selected" in said and "Traceback" not in said
    # selected at smoke scale, asked at quick: one line, nothing written
    code, _, said = cli("run", "mlp", "--scale", "quick", "--device", "cpu", "--only-selected",
                        out / "fp32", "--out", tmp_path / "x", "--data-dir", data_dir)
    assert code == 2 and "at smoke scale" in said, said
    assert not (tmp_path / "x").exists()
    # into the folder of the whole sweep: its tables would shrink to the selected points
    tables = (out / "fp32" / "mlp" / "curves.csv").read_bytes()
    code, _, said = cli("run", "mlp", "--scale", "smoke", "--device", "cpu", "--only-selected",
                        out / "fp32", "--out", out / "fp32", "--data-dir", data_dir)
    assert code == 2 and "holds a whole sweep" in said, said
    assert (out / "fp32" / "mlp" / "curves.csv").read_bytes() == tables
    # the other way round: a whole sweep into the selected points' folder took them for its
    # own runs (trained in other groups), and compare no longer refused the mix
    tables = (out / "bf16" / "mlp" / "curves.csv").read_bytes()
    code, _, said = cli("run", "mlp", "--scale", "smoke", "--device", "cpu", "--precision",
                        "bf16", "--out", out / "bf16", "--data-dir", data_dir)
    assert code == 2 and said == (
        f"adamrepro: error: {out / 'bf16' / 'mlp'} holds only the points selected in "
        f"{out / 'fp32'} (run --only-selected), trained in groups of their own; a whole sweep "
        f"would take them for its own runs: give another --out\n"), said
    assert (out / "bf16" / "mlp" / "curves.csv").read_bytes() == tables


def test_gpu_session_s_bench_stage_times_the_configs_named_at_their_precision(
        tmp_path, data_dir):
    """bench=NAME,NAME:PRECISION: each config named, the second at that precision (files of
    its own beside the fp32 bench), with BENCH_FLAGS passed on to both (--reference-runs 1:
    the reference times each group's first run alone)."""
    done = gpu_session(tmp_path, data_dir, "bench=logreg_mnist,logreg_mnist:bf16",
                       SESSION_MINUTES="", BENCH_PASSES="1", BENCH_FLAGS="--reference-runs 1")
    assert done.returncode == 0, done.stdout + done.stderr
    bench = tmp_path / "results" / "bench"
    assert sorted(p.name for p in bench.glob("*.json")) == [
        "logreg_mnist-cpu-smoke-bf16.json", "logreg_mnist-cpu-smoke.json"]
    for stem, precision in (("logreg_mnist-cpu-smoke", "fp32"),
                            ("logreg_mnist-cpu-smoke-bf16", "bf16")):
        result = json.loads((bench / f"{stem}.json").read_text())
        assert result["precision"] == precision
        runs = {row["implementation"]: row["runs"] for row in result["results"]}
        # the batched side trains the whole grid, the reference one run of each group
        assert runs == {"batched": result["grid"]["runs"],
                        "reference": len(result["grid"]["groups"])}, runs


def test_gpu_session_passes_on_a_spent_budget_s_exit_3_alone_or_joined(tmp_path, data_dir):
    """paper=NAME trains that config alone; its budget spent (work left: exit 3), the session
    exits 3 as well, whether the stage ran alone (no stage log of its own) or joined to
    another by '+' (each stage's log shown in the session's output once both are done)."""
    results = tmp_path / "results"
    alone = gpu_session(tmp_path, data_dir, "paper=logreg_imdb", SESSION_MINUTES="",
                        BUDGET_MINUTES="0.0001")
    assert alone.returncode == 3, alone.stdout + alone.stderr
    assert "time budget spent" in alone.stdout
    assert list((results / "logreg_imdb" / "runs").glob("*.json")), alone.stdout
    assert not (results / "logreg_mnist").exists()  # the first of every config, not named
    assert not list(results.glob("stage-*.log"))  # a stage alone ran once, into the log
    joined = gpu_session(tmp_path, data_dir, "paper=logreg_imdb+sfo", SESSION_MINUTES="",
                         BUDGET_MINUTES="0.0001")
    assert joined.returncode == 3, joined.stdout + joined.stderr
    for log, said in (("stage-paper_logreg_imdb.log", "time budget spent"),
                      ("stage-sfo.log", "ms/step")):
        shown = joined.stdout.split(f"== {results / log}:\n", 1)
        assert len(shown) == 2 and said in shown[1], joined.stdout
        assert said in (results / log).read_text()


# PYTHON for gpu_session.sh: the interpreter, except that scripts/bench_sfo.py and
# scripts/bench_kernels.py each wait (a minute at most) until the other has started, and
# fail if it has not.
RENDEZVOUS = """#!/usr/bin/env bash
case "$1" in
    scripts/bench_sfo.py) mine=sfo other=kernels ;;
    scripts/bench_kernels.py) mine=kernels other=sfo ;;
esac
if [ -n "${mine:-}" ]; then
    touch "MARKS/$mine"
    for _ in $(seq 600); do [ -e "MARKS/$other" ] && break; sleep 0.1; done
    [ -e "MARKS/$other" ] || { echo "$other had not started beside $mine" >&2; exit 1; }
fi
exec PYTHON "$@"
"""


def test_gpu_session_s_stages_joined_by_plus_run_at_the_same_time(tmp_path, data_dir):
    """`sfo+kernels=...`: each stage's command starts only once the other's has (see
    RENDEZVOUS), so both pass only if the two run side by side, not one after the other."""
    marks = tmp_path / "marks"
    marks.mkdir()
    python = tmp_path / "python"
    python.write_text(RENDEZVOUS.replace("MARKS", str(marks)).replace("PYTHON", sys.executable))
    python.chmod(0o755)
    done = gpu_session(tmp_path, data_dir, "sfo+kernels=logreg_mnist", SESSION_MINUTES="",
                       PYTHON=str(python), KERNEL_VARIANTS="plain", KERNEL_STEPS="2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in marks.iterdir()) == ["kernels", "sfo"]
    results = tmp_path / "results"
    assert list((results / "bench").glob("sfo-cpu-*.json"))
    assert [p.name for p in (results / "kernels").iterdir()] == ["logreg_mnist-cpu-smoke.csv"]


def test_gpu_session_s_precision_stage_measures_the_experiments_named(tmp_path, data_dir):
    """precision=NAME: scripts/measure_precision.sh on that experiment alone, at
    PRECISION_SCALE, into RESULTS/precision-<scale>/ (bf16 against fp32 on a CPU). Its
    default is smoke in a try at SCALE=smoke: at quick scale the four arithmetic-bound
    experiments took a CPU's whole 9.6-minute job."""
    done = gpu_session(tmp_path, data_dir, "precision=logreg_mnist", SESSION_MINUTES="")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "results" / "precision-smoke"
    for side in ("fp32", "fp32-selected", "bf16"):
        assert sorted(p.name for p in (out / side).iterdir() if p.name != "compare") == [
            "logreg_mnist"], side
    assert [p.name for p in (out / "bf16" / "compare").iterdir()] == ["logreg_mnist.csv"]


def test_measure_precision_reads_base_and_out_from_the_callers_folder(tmp_path, data_dir):
    """The script works in the repo root: BASE=mybase, a folder where it was called from,
    was "not a folder", and a relative OUT landed in the repo. Both are the caller's now."""
    (tmp_path / "mybase").mkdir()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "measure_precision.sh"), "mlp"], capture_output=True,
        text=True, cwd=tmp_path,
        env={**os.environ, "SCALE": "smoke", "DEVICE": "cpu", "BASE": "mybase",
             "OUT": "myout", "ADAMREPRO": f"{sys.executable} -m adamrepro",
             "ADAMREPRO_DATA": str(data_dir)})
    assert done.returncode == 2, done.stdout + done.stderr
    # found (not "not a folder"), and named where it is
    assert f"BASE={tmp_path / 'mybase'} has no results of mlp" in done.stderr, done.stderr
    assert not (ROOT / "myout").exists()
