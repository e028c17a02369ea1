"""The Makefile, scripts/reproduce_paper.sh and scripts/measure_precision.sh refuse a mistake
in a variable the user set in one line naming that variable (not the flag it becomes) and the
fix, exit code 2, before anything is fetched, trained or written. An audit found `make
logreg_mnist OUT= DEVICE=` training into a folder named `--device`, `make clean OUT=` expanding
to `rm -rf /*/runs`, BUDGET_MINUTES=abc read as 0, CONFIGS=" " doing nothing with exit 0, and
PRECISIONS=fp16 or an unknown second experiment refused only after the fp32 sweep had trained.

Nothing here can run a destructive or heavy command if a check regresses: make runs with -n
alone (it prints its recipes and runs none), and the scripts call a stand-in for adamrepro that
only records its arguments (the tests assert it was never called)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What a make or the shell around the test may have set, that the scripts and make read.
INHERITED = ("OUT", "SCALE", "DEVICE", "DATA", "PRECISION", "PYTHON", "RUN_FLAGS", "BENCH_PASSES",
             "BENCH_FLAGS", "TEST_WORKERS", "CONFIGS", "BUDGET_MINUTES", "PRECISIONS", "SELECTED",
             "SEEDS", "BASE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def clean_env(**env: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in INHERITED}, **env}


def one_line(done: subprocess.CompletedProcess) -> str:
    """The refusal's single stderr line (asserted single and non-empty)."""
    assert done.stderr.endswith("\n") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr.rstrip("\n")


def make_preview(*args: str) -> subprocess.CompletedProcess:
    """`make -n` on the repo: recipes are printed, never run."""
    return subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60, env=clean_env())


def paths(tmp_path: Path, text: str) -> str:
    """@tmp for tmp_path, @file for a plain file in it."""
    (tmp_path / "a-file").write_text("")
    return text.replace("@file", str(tmp_path / "a-file")).replace("@tmp", str(tmp_path))


OUT_EMPTY = "OUT is empty; give the results folder (e.g. OUT="


@pytest.mark.parametrize("args, said", [
    (["logreg_mnist", "OUT=", "DEVICE="], OUT_EMPTY),  # trained into ./--device
    (["logreg_mnist", "OUT=@tmp/out", "DEVICE="], "DEVICE is empty; give one of auto|cpu|cuda"),
    (["plan", "OUT="], OUT_EMPTY),  # was "unexpected extra argument(s) (auto)"
    (["plan", "OUT= "], OUT_EMPTY),
    (["plan", "OUT=@tmp/a b"], 'OUT="@tmp/a b" has a space'),
    (["plan", "OUT=@file"], "OUT=@file is a file"),
    (["all", "OUT="], OUT_EMPTY),
    (["plot", "OUT="], OUT_EMPTY),  # was "Option '--out' requires an argument"
    (["report", "OUT="], OUT_EMPTY),
    (["bench-kernels", "OUT="], OUT_EMPTY),
    (["bench", "OUT="], OUT_EMPTY),
    (["bench-gpu", "OUT="], OUT_EMPTY),
    (["clean", "OUT="], OUT_EMPTY),  # was rm -rf /*/runs /*/.lock
    (["clean", "OUT=/"], "OUT=/ is the root folder"),
    (["clean", "OUT=//"], "OUT=// is the root folder"),
    (["clean", "OUT=/tmp/.."], "OUT=/tmp/.. is the root folder"),
    (["clean", "OUT=\t"], OUT_EMPTY),
    (["plan", "OUT=@tmp/out", "SCALE="], "SCALE is empty; give one of smoke|quick|paper"),
    (["logreg_mnist", "OUT=@tmp/out", "SCALE=huge"],
     "SCALE=huge is not one of smoke|quick|paper; e.g. SCALE=quick"),
    (["bench-kernels", "OUT=@tmp/out", "SCALE=huge"], "SCALE=huge is not one of"),
    # it named the folder results/huge, which plot then said held no results
    (["plot", "SCALE=huge"], "SCALE=huge is not one of"),
    (["report", "SCALE=huge"], "SCALE=huge is not one of"),
    (["plan", "OUT=@tmp/out", "DEVICE=gpu"],
     "DEVICE=gpu is not one of auto|cpu|cuda; e.g. DEVICE=cpu"),
    (["bench", "DEVICE=gpu"], "DEVICE=gpu is not one of auto|cpu|cuda"),
    (["plan", "OUT=@tmp/out", "PRECISION=fp16"],
     "PRECISION=fp16 is not one of fp32|tf32|bf16; e.g. PRECISION=bf16"),
    (["logreg_mnist", "OUT=@tmp/out", "DATA=@file"], "DATA=@file is a file"),
    (["bench-gpu", "BENCH_PASSES="], "BENCH_PASSES is empty"),
    (["bench-gpu", "BENCH_PASSES=0"], "BENCH_PASSES=0 is not a whole number of at least 1"),
    (["bench-gpu", "BENCH_PASSES=abc"], "BENCH_PASSES=abc is not a whole number of at least 1"),
    (["test", "TEST_WORKERS="], "TEST_WORKERS is empty"),
    (["test", "TEST_WORKERS=many"], "TEST_WORKERS=many is not auto or a number"),
    (["lint", "PYTHON="], "PYTHON is empty"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_make_refuses_a_bad_variable_in_one_line_naming_it(tmp_path, args, said):
    done = make_preview(*(paths(tmp_path, arg) for arg in args))
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done)
    assert line.startswith("Makefile:") and paths(tmp_path, said) in line, line
    assert done.stdout == ""  # not one recipe line: make stopped before any
    assert not (tmp_path / "out").exists()


def test_make_clean_quotes_out_and_deletes_only_under_it(tmp_path):
    """A good OUT goes through (quoted), and the checks refuse none of the defaults."""
    done = make_preview("clean", f"OUT={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert f'for runs in "{tmp_path}"/*/runs' in done.stdout


@pytest.mark.parametrize("target", ["bench", "bench-gpu"])
def test_make_bench_writes_into_out(tmp_path, target):
    """`make bench OUT=DIR` ran `adamrepro bench` without --out, so it rewrote the committed
    rows in results/bench/ whatever OUT said; every bench command now writes OUT/bench/."""
    done = make_preview(target, f"OUT={tmp_path}")
    assert done.returncode == 0, done.stderr
    benches = done.stdout.count("-m adamrepro bench ")
    assert benches == (2 if target == "bench" else 1), done.stdout
    assert done.stdout.count(f'--out "{tmp_path}"') == benches, done.stdout


def test_make_clean_removes_the_runs_of_experiment_folders_alone(tmp_path):
    """`make clean OUT=~` removed every ~/*/runs, whoever's: only a folder that adamrepro
    wrote (its config.json, or a sweep's owner file where none has finished) loses its
    runs/ and lock; its tables stay. Run from another folder, so that the repository's
    caches stay."""
    out = tmp_path / "out"
    for name, marker in (("finished", "config.json"), ("cut_off", ".sweep-owner.json"),
                         ("theirs", None)):
        (out / name / "runs").mkdir(parents=True)
        (out / name / "runs" / "r.json").write_text("{}")
        (out / name / ".lock").write_text("")
        if marker:
            (out / name / marker).write_text("{}")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "-C", str(work),
                           "clean", f"OUT={out}"], capture_output=True, text=True, timeout=60,
                          env=clean_env())
    assert done.returncode == 0, done.stderr
    assert not (out / "finished" / "runs").exists() and not (out / "finished" / ".lock").exists()
    assert not (out / "cut_off" / "runs").exists()
    assert (out / "finished" / "config.json").exists()
    assert (out / "theirs" / "runs" / "r.json").exists() and (out / "theirs" / ".lock").exists()
    done = make_preview("plan", "SCALE=smoke", "DEVICE=cpu", f"OUT={tmp_path}/out")
    assert done.returncode == 0, done.stderr
    assert f'--out "{tmp_path}/out" --device cpu' in done.stdout


@pytest.fixture
def stand_in(tmp_path) -> tuple[str, Path]:
    """An ADAMREPRO that records its arguments in calls.log and does nothing else."""
    script = tmp_path / "adamrepro-stand-in.sh"
    log = tmp_path / "calls.log"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    return f"sh {script}", log


def script(name: str, tmp_path: Path, stand_in: tuple[str, Path], *args: str,
           **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
        timeout=60, env=clean_env(**{"SCALE": "smoke", "DEVICE": "cpu",
                                     "OUT": str(tmp_path / "out"), "ADAMREPRO": stand_in[0],
                                     **{k: paths(tmp_path, v) for k, v in env.items()}}))


REPRODUCE_PAPER_MISTAKES = [
    ({"BUDGET_MINUTES": "abc"}, "BUDGET_MINUTES=abc is not a number of minutes above 0; "
                                "e.g. BUDGET_MINUTES=8"),
    ({"BUDGET_MINUTES": "-1"}, "BUDGET_MINUTES=-1 is not a number of minutes above 0"),
    ({"BUDGET_MINUTES": "0"}, "BUDGET_MINUTES=0 is not a number of minutes above 0"),
    ({"BUDGET_MINUTES": "5min"}, "BUDGET_MINUTES=5min is not a number of minutes above 0"),
    ({"CONFIGS": " "}, "CONFIGS names no config; e.g. CONFIGS="),
    ({"CONFIGS": "\t \n"}, "CONFIGS names no config"),
    ({"DEVICE": "gpu"}, "DEVICE=gpu is not one of auto|cpu|cuda; e.g. DEVICE=cpu"),
    ({"SCALE": "huge"}, "SCALE=huge is not one of smoke|quick|paper"),
    # set but empty (a variable of a script that forgot it): it was read as paper, and
    # trained at paper scale into the committed results/
    ({"SCALE": ""}, "SCALE= is not one of smoke|quick|paper"),
    ({"OUT": "@file"}, "OUT=@file is a file; give OUT a results folder"),
    # fetch refused it naming its --data-dir flag, which the script's user does not pass
    ({"ADAMREPRO_DATA": "@file"}, "ADAMREPRO_DATA=@file is a file; give ADAMREPRO_DATA a "
                                  "data folder (new or holding the datasets), or leave it "
                                  "unset"),
    ({"ADAMREPRO_DATA": "@file/data"}, "ADAMREPRO_DATA=@file/data is under a file (@file); "
                                       "give ADAMREPRO_DATA a data folder"),
    # realpath made a blank one a folder named " " in the caller's folder, fetched into
    ({"ADAMREPRO_DATA": " "}, "ADAMREPRO_DATA is blank; unset it, or set it to a folder"),
    ({"OUT": "\t"}, "OUT is blank; unset it, or set it to a folder"),
    # it reached `run` and not `fetch`, which fetched into the default folder meanwhile
    ({"RUN_FLAGS": "--unverified-data --data-dir @tmp/data"},
     "RUN_FLAGS passes --data-dir, which fetch would not get; set ADAMREPRO_DATA=DIR instead"),
    # the shell splits RUN_FLAGS at a tab or a newline too: --data-dir reached `run` unrefused
    ({"RUN_FLAGS": "--unverified-data\t--data-dir @tmp/data"}, "RUN_FLAGS passes --data-dir"),
    ({"RUN_FLAGS": "\n--data-dir=@tmp/data"}, "RUN_FLAGS passes --data-dir"),
    # adamrepro refuses a ~user of no known user; realpath made it a folder named ~user
    ({"ADAMREPRO_DATA": "~no-such-user-here/data"},
     "ADAMREPRO_DATA=~no-such-user-here/data: no user 'no-such-user-here' whose home"),
]
if not __import__("torch").cuda.is_available():  # the default DEVICE where there is no GPU:
    # `run` refused it naming its own flag (--device cpu), which the script's user cannot pass
    REPRODUCE_PAPER_MISTAKES.append(({"DEVICE": "cuda"}, (
        "DEVICE=cuda (the default): no CUDA device is available here; set DEVICE=cpu (or "
        "DEVICE=auto) to run on this machine's CPU")))


@pytest.mark.parametrize("env, said", REPRODUCE_PAPER_MISTAKES)
def test_reproduce_paper_refuses_before_fetching_anything(tmp_path, stand_in, env, said):
    done = script("reproduce_paper.sh", tmp_path, stand_in,
                  **{"CONFIGS": "configs/logreg_mnist.yaml", **env})
    assert done.returncode == 2, done.stdout + done.stderr
    assert one_line(done).startswith("reproduce_paper: " + paths(tmp_path, said)), done.stderr
    assert done.stdout == ""
    assert not stand_in[1].exists(), stand_in[1].read_text()  # nothing fetched, nothing run
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["reproduce_paper.sh", "measure_precision.sh",
                                  "gpu_session.sh", "offline_bundle.sh"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_a_script_s_help_is_its_header_and_runs_nothing(tmp_path, stand_in, name, flag):
    """`reproduce_paper.sh --help` ignored its argument and began to train the whole paper;
    the others read it as a stage, an experiment or a flag they refuse."""
    done = script(name, tmp_path, stand_in, flag)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = (ROOT / "scripts" / name).read_text().splitlines()[1:]
    header = lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert len(header) > 10 and done.stdout.splitlines() == [
        line.removeprefix("#").removeprefix(" ") for line in header], done.stdout
    assert not stand_in[1].exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "args", "env", "said"), [
    ("reproduce_paper.sh", [], {"DEVICE": "gpu"}, "reproduce_paper: DEVICE=gpu is not one of"),
    ("measure_precision.sh", ["logreg_mnist"], {"SCALE": "huge"},
     "measure_precision: SCALE=huge is not one of"),
    ("gpu_session.sh", ["sfoo"], {}, "gpu_session: unknown stage sfoo")])
def test_a_script_called_through_a_symlink_finds_the_repo(tmp_path, stand_in, name, args,
                                                          env, said):
    """A script linked from elsewhere (~/bin) looked for its lib/ and the repo beside the
    link ("lib/paths.sh: No such file or directory"): it follows the link, and refuses a
    mistake as it does when called where it lies."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / name).symlink_to(ROOT / "scripts" / name)
    done = subprocess.run(
        ["bash", str(bin_dir / name), *args], capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=clean_env(**{"SCALE": "smoke", "DEVICE": "cpu",
                                       "OUT": str(tmp_path / "out"), "ADAMREPRO": stand_in[0],
                                       **env}))
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and "No such file" not in done.stderr, done.stderr
    assert not stand_in[1].exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["configs/mlp.yaml"], ["--scale", "quick"]])
def test_reproduce_paper_refuses_an_argument(tmp_path, stand_in, args):
    done = script("reproduce_paper.sh", tmp_path, stand_in, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert one_line(done).startswith(f"reproduce_paper: takes no arguments (got '{args[0]}'); "
                                     f"its settings are variables, e.g. CONFIGS="), done.stderr
    assert not stand_in[1].exists() and not (tmp_path / "out").exists()


def test_reproduce_paper_reads_out_from_the_folder_it_is_called_from(tmp_path, stand_in):
    """OUT=afile, a file in the caller's folder: it was looked for under the repo root, not
    found a file, and the results would have gone there."""
    (tmp_path / "afile").write_text("")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce_paper.sh")], capture_output=True,
        text=True, timeout=60, cwd=tmp_path,
        env=clean_env(SCALE="smoke", DEVICE="cpu", OUT="afile", ADAMREPRO=stand_in[0],
                      CONFIGS="configs/logreg_mnist.yaml"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert one_line(done).startswith(f"reproduce_paper: OUT={tmp_path / 'afile'} is a file")
    assert not stand_in[1].exists()


KNOWN = "cnn_cifar10 extensions logreg_imdb logreg_mnist mlp mlp_sfo vae_bias_correction"


@pytest.mark.parametrize("args, env, said", [
    (["logreg_mnist"], {"PRECISIONS": "fp16"},
     'PRECISIONS=fp16: fp16 is not tf32 or bf16; e.g. PRECISIONS="tf32 bf16"'),
    (["logreg_mnist"], {"PRECISIONS": "bf16 fp16"}, "PRECISIONS=bf16 fp16: fp16 is not tf32"),
    (["logreg_mnist"], {"PRECISIONS": "fp32"},
     "PRECISIONS=fp32: fp32 is the side every other precision is compared with"),
    (["logreg_mnist"], {"PRECISIONS": " "}, "PRECISIONS names no precision"),
    (["logreg_mnist", "nope"], {},
     f"unknown experiment 'nope'; name experiments of configs/: {KNOWN}"),
    (["logreg_mnist", ""], {}, "unknown experiment ''"),
    (["configs/mlp.yaml"], {}, "unknown experiment 'configs/mlp.yaml'"),
    (["logreg_mnist"], {"SELECTED": "yes"}, "SELECTED=yes is not 0 or 1"),
    (["logreg_mnist"], {"SELECTED": "2"}, "SELECTED=2 is not 0 or 1"),
    (["logreg_mnist"], {"SEEDS": "abc"}, "SEEDS=abc is not a number of seeds of at least 2"),
    (["logreg_mnist"], {"SEEDS": "1"}, "SEEDS=1 is not a number of seeds of at least 2"),
    (["logreg_mnist"], {"SCALE": "huge"}, "SCALE=huge is not one of smoke|quick|paper"),
    (["logreg_mnist"], {"DEVICE": "gpu"}, "DEVICE=gpu is not one of auto|cpu|cuda"),
    (["logreg_mnist"], {"OUT": "@file"}, "OUT=@file is a file"),
    (["logreg_mnist"], {"ADAMREPRO_DATA": " "}, "ADAMREPRO_DATA is blank; unset it"),
    (["logreg_mnist"], {"BASE": "@tmp/nobase"}, "BASE=@tmp/nobase is not a folder"),
    (["logreg_mnist", "mlp"], {"BASE": "@tmp/base"},
     "BASE=@tmp/base has no results of mlp (@tmp/base/mlp/best.csv is missing)"),
    # found by `run` alone, after the experiments before it, in two lines
    (["logreg_mnist"], {"BASE": "@tmp/paper-base"},
     "BASE=@tmp/paper-base holds logreg_mnist at paper scale, and SCALE=smoke; give "
     "SCALE=paper"),
    # a bf16 BASE: bf16 was measured against itself, "identical, bit for bit"
    (["logreg_mnist"], {"BASE": "@tmp/bf16-base"},
     "BASE=@tmp/bf16-base holds logreg_mnist trained at bf16 precision; give BASE the --out "
     "folder of fp32 results"),
    # bash read 09 as octal: its raw error came before this line
    (["nope"], {"SEEDS": "09"}, "unknown experiment 'nope'"),
    # found by `compare` at the end, after every other precision had trained
    (["logreg_mnist"], {"BASE": "@tmp/one-seed"},
     "BASE=@tmp/one-seed holds logreg_mnist with 1 seed a point: no seed spread to compare "
     "the precisions against; give a BASE run with --seeds 2 or more, or SEEDS=2 to train "
     "its selected points again with two"),
    (["logreg_mnist"], {"BASE": "@tmp/one-seed", "SELECTED": "0", "SEEDS": "2"},
     "BASE=@tmp/one-seed holds logreg_mnist with 1 seed a point: no seed spread to compare "
     "the precisions against; give a BASE run with --seeds 2 or more\n"),
])
def test_measure_precision_refuses_before_the_first_training(tmp_path, stand_in, args, env,
                                                             said):
    (tmp_path / "base" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "base" / "logreg_mnist" / "best.csv").write_text("")
    (tmp_path / "paper-base" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "paper-base" / "logreg_mnist" / "best.csv").write_text("")
    (tmp_path / "paper-base" / "logreg_mnist" / "config.json").write_text(
        json.dumps({"scale": "paper", "config": {"name": "logreg_mnist"}}, indent=1))
    (tmp_path / "bf16-base" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "bf16-base" / "logreg_mnist" / "best.csv").write_text("")
    (tmp_path / "bf16-base" / "logreg_mnist" / "config.json").write_text(json.dumps(
        {"scale": "smoke", "config": {"name": "logreg_mnist", "training": {
            "epochs": 2, "precision": "bf16"}}}, indent=1))
    (tmp_path / "one-seed" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "one-seed" / "logreg_mnist" / "best.csv").write_text(
        "method,optimizer,n_seeds\nadam,adam,2\nsgd,sgd_nesterov,1\n")
    done = script("measure_precision.sh", tmp_path, stand_in, *args, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    expected = "measure_precision: " + paths(tmp_path, said)
    if said.endswith("\n"):  # the whole line
        assert done.stderr == expected, done.stderr
    assert one_line(done).startswith(expected.rstrip("\n")), done.stderr
    assert done.stdout == ""
    assert not stand_in[1].exists(), stand_in[1].read_text()  # nothing trained
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seeds, flag", [(None, ""), ("04", " --seeds 4")])
def test_measure_precision_trains_the_selected_points_with_the_base_s_seeds(
        tmp_path, stand_in, seeds, flag):
    """SEEDS unset: the selected points are trained with every seed BASE holds (run
    --only-selected's default), not the default --seeds 2 the sweep of OUT/fp32 gets (a BASE
    of 3 seeds left one without a twin); SEEDS, as base 10, wins."""
    (tmp_path / "base" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "base" / "logreg_mnist" / "best.csv").write_text("")
    done = script("measure_precision.sh", tmp_path, stand_in, "logreg_mnist",
                  BASE="@tmp/base", **({"SEEDS": seeds} if seeds else {}))
    assert done.returncode == 0, done.stderr
    calls = stand_in[1].read_text().splitlines()
    runs = [call for call in calls if call.startswith("run ")]
    assert len(runs) == 2 and all("--only-selected" in call for call in runs), calls
    for call in runs:
        assert call.endswith(f"{flag} --only-selected {tmp_path / 'base'}"), call
        assert "--quiet" not in call  # a log gets progress lines (adamrepro/progress.py)


def test_a_bare_make_lists_the_targets_and_all_plots_after_every_experiment():
    """`make` alone ran `pip install -e` into whatever environment was active; it lists the
    targets now. `make all` draws the figures and the report after the experiments, as a
    recipe (as prerequisites, `make -j all` started them beside the training)."""
    done = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT)],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0 and done.stderr == "", done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    assert listed[:2] == ["help", "install"] and {"all", "plot", "report", "<experiment>"} <= set(
        listed), done.stdout
    preview = make_preview("-j", "4", "all", "SCALE=smoke", "DEVICE=cpu", "OUT=/tmp/out").stdout
    lines = preview.splitlines()
    runs = [i for i, line in enumerate(lines) if " -m adamrepro run " in line]
    plot = next(i for i, line in enumerate(lines) if " -m adamrepro plot " in line)
    assert len(runs) == len(list((ROOT / "configs").glob("*.yaml"))) and max(runs) < plot


def test_measure_precision_trains_a_one_seed_base_s_points_again_with_seeds(tmp_path,
                                                                           stand_in):
    """SEEDS=2 with SELECTED=1 trains the selected points of a one-seed BASE again with two
    seeds: the comparison has its spread, and nothing is refused."""
    (tmp_path / "bf16-base" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "bf16-base" / "logreg_mnist" / "best.csv").write_text("")
    (tmp_path / "bf16-base" / "logreg_mnist" / "config.json").write_text(json.dumps(
        {"scale": "smoke", "config": {"name": "logreg_mnist", "training": {
            "epochs": 2, "precision": "bf16"}}}, indent=1))
    (tmp_path / "one-seed" / "logreg_mnist").mkdir(parents=True)
    (tmp_path / "one-seed" / "logreg_mnist" / "best.csv").write_text(
        "method,optimizer,n_seeds\nsgd,sgd_nesterov,1\n")
    done = script("measure_precision.sh", tmp_path, stand_in, "logreg_mnist",
                  BASE="@tmp/one-seed", SEEDS="2")
    assert done.returncode == 0, done.stderr
    runs = [call for call in stand_in[1].read_text().splitlines() if call.startswith("run ")]
    assert runs and all("--seeds 2 --only-selected" in call for call in runs), runs



@pytest.mark.parametrize("name, args", [("reproduce_paper.sh", []),
                                        ("measure_precision.sh", ["logreg_mnist"])])
@pytest.mark.parametrize("given, meant", [("data", "caller/data"), ("~/data", "home/data"),
                                          ("~", "home")])
def test_a_data_folder_is_the_one_its_user_meant(tmp_path, name, args, given, meant):
    """A relative ADAMREPRO_DATA named a folder of the repo (measure_precision.sh works from
    its root), and a quoted ~ a folder named ~ in the caller's folder, where adamrepro reads a
    ~ as the home folder. What adamrepro is handed is checked by a stand-in that records it."""
    log = tmp_path / "data.log"
    stand_in = tmp_path / "adamrepro-stand-in.sh"
    stand_in.write_text(f'#!/bin/sh\necho "$ADAMREPRO_DATA" >> "{log}"\n')
    caller = tmp_path / "caller"
    caller.mkdir()
    env = clean_env(SCALE="smoke", DEVICE="cpu", OUT=str(tmp_path / "out"),
                    ADAMREPRO=f"sh {stand_in}", CONFIGS="configs/logreg_mnist.yaml",
                    ADAMREPRO_DATA=given, HOME=str(tmp_path / "home"))
    subprocess.run(["bash", str(ROOT / "scripts" / name), *args], cwd=caller, env=env,
                   capture_output=True, text=True, timeout=60)
    seen = set(log.read_text().splitlines())
    assert seen == {str(tmp_path / meant)}, seen


def test_a_data_folder_under_a_user_s_home_is_there(tmp_path, stand_in):
    """A quoted ~user/data, which adamrepro reads as that user's home (Path.expanduser), was
    made a folder named ~user in the caller's folder."""
    import pwd
    me = pwd.getpwuid(os.getuid())
    caller = tmp_path / "caller"
    caller.mkdir()
    log = tmp_path / "data.log"
    record = tmp_path / "record.sh"
    record.write_text(f'#!/bin/sh\necho "$ADAMREPRO_DATA" >> "{log}"\n')
    env = clean_env(SCALE="smoke", DEVICE="cpu", OUT=str(tmp_path / "out"),
                    ADAMREPRO=f"sh {record}", CONFIGS="configs/logreg_mnist.yaml",
                    ADAMREPRO_DATA=f"~{me.pw_name}/data")
    subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_paper.sh")], cwd=caller, env=env,
                   capture_output=True, text=True, timeout=60)
    expected = os.path.realpath(os.path.join(me.pw_dir, "data"))
    assert set(log.read_text().splitlines()) == {expected}
