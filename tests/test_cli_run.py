"""`adamrepro run` and `plot` end to end on real MNIST at smoke scale: what is recorded,
what is selected, what is drawn, and that a re-run or a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from adamrepro.figures.palette import COLORS

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "logreg_mnist.yaml"
COLUMNS = ["experiment", "optimizer", "run_id", "seed", "epoch", "train_loss",
           "train_loss_full", "test_loss", "test_acc", "seconds", "diverged", "lr"]
RUNS = sum(len(m["grid"]["lr"]) for m in yaml.safe_load(CONFIG.read_text())["methods"].values())
# Columns that legitimately differ between two identical sweeps.
VOLATILE = ["seconds", "train_seconds", "commit", "device", "date"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_dir):
    from adamrepro.cli import main

    out = tmp_path_factory.mktemp("results")
    args = ["run", str(CONFIG), "--scale", "smoke", "--out", str(out), "--quiet",
            "--data-dir", str(data_dir)]
    assert main(args) == 0
    assert main(["plot", "logreg_mnist", "--out", str(out)]) == 0
    return out / "logreg_mnist"


def test_curves_have_every_column_run_and_pass(smoke):
    curves = pd.read_csv(smoke / "curves.csv")
    assert set(COLUMNS) <= set(curves.columns)
    assert set(curves["optimizer"]) == {"adam", "adagrad", "sgd_nesterov"}
    config = yaml.safe_load(CONFIG.read_text())
    grid_sizes = {label: len(m["grid"]["lr"]) for label, m in config["methods"].items()}
    epochs = config["scales"]["smoke"]["epochs"]
    for method, runs in curves.groupby("method"):
        assert runs["run_id"].nunique() == grid_sizes[method]
        finished = runs[~runs.groupby("run_id")["diverged"].transform("any")]
        assert (finished.groupby("run_id")["epoch"].max() == epochs).all()
    assert curves["test_acc"].between(0, 1).all()


def test_training_reduces_the_loss_and_beats_chance(smoke):
    best = pd.read_csv(smoke / "best.csv")
    curves = pd.read_csv(smoke / "curves.csv")
    initial = curves.loc[curves["epoch"] == 0, "train_loss_full"]
    assert np.allclose(initial, np.log(10), atol=0.05)  # near-uniform softmax at init
    assert (best["final_train_loss_full"] < 0.7 * np.log(10)).all()
    assert (best["final_test_acc"] > 0.75).all()


def test_best_is_the_lowest_final_training_loss(smoke):
    curves = pd.read_csv(smoke / "curves.csv")
    best = pd.read_csv(smoke / "best.csv").set_index("method")
    last = curves.sort_values("epoch").groupby("run_id").tail(1)
    ok = last[~last["run_id"].isin(curves.loc[curves["diverged"], "run_id"])]
    for method, runs in ok.groupby("method"):
        winner = runs.loc[runs["train_loss"].idxmin()]
        assert best.loc[method, "run_ids"] == winner["run_id"]
        assert best.loc[method, "lr"] == winner["lr"]


def test_every_run_starts_from_the_same_weights(smoke):
    curves = pd.read_csv(smoke / "curves.csv")
    start = curves.loc[curves["epoch"] == 0, ["train_loss_full", "test_loss"]]
    assert start.nunique().max() == 1


def test_provenance_is_recorded(smoke):
    """What a result says of where it came from is what it came from: this checkout's commit
    (read here with git, independently), this torch, a device this machine has, and a date
    in UTC, of today, not a machine's local time without its offset."""
    import datetime as dt

    import torch

    meta = json.loads((smoke / "config.json").read_text())
    for key in ("commit", "torch_version", "device", "date", "command"):
        assert meta["provenance"][key]
    provenance = meta["provenance"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert provenance["commit"].removesuffix("+dirty") == head
    assert provenance["torch_version"] == torch.__version__
    assert provenance["device"].startswith("cpu")
    date = dt.datetime.fromisoformat(provenance["date"])
    assert date.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - date) < dt.timedelta(days=1)
    assert meta["scale"] == "smoke" and meta["config"]["training"]["epochs"] == 2
    assert "--scale smoke" in meta["provenance"]["command"]
    # the training time: each group's last recorded `seconds`, summed over the groups (one
    # per method)
    curves = pd.read_csv(smoke / "curves.csv")
    per_group = curves.groupby("method")["seconds"].max()
    assert meta["timing"]["groups"] == len(meta["config"]["methods"]) == len(per_group)
    assert meta["timing"]["seconds"] == pytest.approx(per_group.sum(), abs=0.01)
    assert meta["timing"]["seconds"] > 0
    # best.csv, read alone, says it too: each selected point's seeds, and the commit, torch
    # and device its runs recorded
    best = pd.read_csv(smoke / "best.csv", dtype={"seeds": str})
    for _, row in best.iterrows():
        runs = curves[curves["run_id"].isin(row["run_ids"].split(";"))]
        assert row["seeds"] == ";".join(map(str, sorted(runs["seed"].unique())))
        for column in ("commit", "torch_version", "device"):
            assert row[column] == runs[column].iloc[0] == provenance[column], column


def test_each_row_says_its_runs_settings_and_provenance_as_its_record_does(smoke):
    """curves.csv is made from the run records: each run's rows are its passes in order (a
    reader of a run's last row reads its last pass), with the hyperparameters it trained
    with (Adam's betas as beta1 and beta2, by which the figures and the step-bound claim
    read them) and all of its provenance, the arithmetic and the date included."""
    curves = pd.read_csv(smoke / "curves.csv")
    records = [json.loads(path.read_text()) for path in (smoke / "runs").glob("*.json")]
    assert any("betas" in record["hparams"] for record in records)
    for record in records:
        rows = curves[curves["run_id"] == record["run_id"]]
        assert rows["epoch"].tolist() == [row["epoch"] for row in record["rows"]]
        hparams = record["hparams"]
        betas = hparams.get("betas", ())
        settings = {"lr": hparams["lr"], **dict(zip(("beta1", "beta2")[:len(betas)], betas,
                                                      strict=True))}
        for column, value in settings.items():
            assert set(rows[column]) == {value}, (record["run_id"], column)
        for column in ("commit", "torch_version", "device", "precision", "date"):
            assert set(rows[column]) == {record["provenance"][column]}, column


def test_a_whole_number_hyperparameter_is_written_as_one(tmp_path, cli, data_dir):
    """L-BFGS's `max_iter: 3` is an int, and SGD has none: pandas held the column as floats
    (an empty cell in SGD's rows) and wrote 3.0 in curves.csv and best.csv. It is written
    as 3; a float given as one (`lr: 1.0`) stays 1.0, a switch stays True, and the readers
    (plot, report) take the tables as before."""
    import csv

    config = yaml.safe_load(CONFIG.read_text())
    config["methods"] = {
        "lbfgs": {"optimizer": "torch.optim.LBFGS", "hparams": {"max_iter": 3},
                  "grid": {"lr": [1.0]}},
        "sgd": {"optimizer": "torch.optim.SGD", "hparams": {"momentum": 0.9, "nesterov": True},
                "grid": {"lr": [0.1]}}}
    path = tmp_path / "integers.yaml"
    path.write_text(yaml.safe_dump(config))
    code, _, stderr = cli("run", path, "--scale", "smoke", "--out", tmp_path, "--quiet",
                          "--data-dir", data_dir)
    assert code == 0, stderr
    folder = tmp_path / "logreg_mnist"
    written = {"lbfgs": {"max_iter": "3", "lr": "1.0", "nesterov": ""},
               "sgd": {"max_iter": "", "lr": "0.1", "nesterov": "True"}}
    for name in ("curves.csv", "best.csv"):
        with (folder / name).open(newline="") as file:
            rows = list(csv.DictReader(file))
        assert {row["method"] for row in rows} == set(written), name
        for row in rows:
            for column, text in written[row["method"]].items():
                assert row[column] == text, (name, row["method"], column)
    for command in (("plot", "logreg_mnist"), ("report",)):
        code, _, stderr = cli(*command, "--out", tmp_path)
        assert code == 0, (command, stderr)


def test_plot_draws_each_optimizer_in_its_color(smoke):
    image = mpimg.imread(smoke / "curves.png")[..., :3]
    assert (smoke / "curves.pdf").stat().st_size > 0
    for optimizer in ("adam", "adagrad", "sgd_nesterov"):
        rgb = np.array([int(COLORS[optimizer][i : i + 2], 16) / 255 for i in (1, 3, 5)])
        close = np.abs(image - rgb).max(-1) < 0.04
        assert close.sum() > 200, f"{optimizer}'s color is missing from the figure"


def test_rerun_skips_finished_runs(smoke, cli, data_dir):
    runs = sorted(smoke.joinpath("runs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    code, out, _ = cli("run", CONFIG, "--scale", "smoke", "--out", smoke.parent, "--quiet",
                       "--data-dir", data_dir)
    assert code == 0 and out.startswith(f"trained 0 runs, {len(runs)} already finished")
    assert [p.stat().st_mtime_ns for p in runs] == stamps


def test_fewer_seeds_than_a_folder_holds_are_refused_more_are_added(tmp_path, cli,
                                                                     data_dir):
    """Tables written with fewer seeds than a folder holds would drop the others' curves
    without a word: refused, the folder untouched; more seeds add to it."""
    args = ("run", CONFIG, "--scale", "smoke", "--out", tmp_path, "--quiet", "--data-dir",
            data_dir)
    assert cli(*args, "--seeds", "2")[0] == 0
    folder = tmp_path / "logreg_mnist"
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    for fewer in ((), ("--seeds", "1"), ("--seeds", "1", "--dry-run")):
        code, _, err = cli(*args, *fewer)
        assert code == 2 and "holds 2 seeds per grid point" in err and "--seeds 2" in err, err
        assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    code, out, _ = cli(*args, "--seeds", "3")
    assert code == 0 and out.startswith(f"trained {RUNS} runs, {2 * RUNS} already finished")
    assert sorted(pd.read_csv(folder / "curves.csv")["seed"].unique()) == [0, 1, 2]


def test_seeds_added_to_a_folder_batch_and_trace_a_fresh_sweeps_curves(tmp_path, cli,
                                                                       data_dir):
    """The MLP with dropout: a group's masks are seeded by its identity. Groups held every
    seed, so `--seeds 2` gave seed 0 other masks than `--seeds 1` did (one run id, two
    curves, by the folder's history), and a second seed added to a folder trained one run a
    group (halves of a group half finished). A group is one seed's now."""
    args = ("run", "mlp", "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    assert cli(*args, "--out", tmp_path / "grown")[0] == 0
    assert cli(*args, "--out", tmp_path / "grown", "--seeds", "2")[0] == 0
    assert cli(*args, "--out", tmp_path / "fresh", "--seeds", "2")[0] == 0
    grown, fresh = (pd.read_csv(tmp_path / side / "mlp" / "curves.csv")
                    for side in ("grown", "fresh"))
    assert grown.loc[grown["seed"] == 1, "group_size"].max() > 1

    def curves(frame: pd.DataFrame) -> pd.DataFrame:
        kept = [c for c in frame.columns if c not in VOLATILE
                and (c.startswith(("train_", "test_")) or c in ("run_id", "epoch", "diverged",
                                                                 "group_size"))]
        return frame[kept].sort_values(["run_id", "epoch"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(curves(grown), curves(fresh))


def test_a_run_reused_under_another_label_is_shown_under_todays(smoke, cli, data_dir,
                                                                tmp_path):
    """A run is its settings: a config that gives adagrad's settings another label (and a
    variant) reuses its runs, and the tables call them by the new label alone (they had
    kept the old one, beside the method that now has that name)."""
    out = tmp_path / "results"
    shutil.copytree(smoke, out / "logreg_mnist")
    config = yaml.safe_load(CONFIG.read_text())
    config["methods"]["adagrad_renamed"] = {**config["methods"].pop("adagrad"),
                                            "variant": "renamed"}
    path = tmp_path / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    code, said, err = cli("run", path, "--scale", "smoke", "--out", out, "--quiet",
                          "--data-dir", data_dir)
    assert code == 0, err
    assert said.startswith(f"trained 0 runs, {RUNS} already finished")
    curves = pd.read_csv(out / "logreg_mnist" / "curves.csv")
    before = pd.read_csv(smoke / "curves.csv")
    was = before[before["method"] == "adagrad"]
    renamed = curves[curves["run_id"].isin(was["run_id"])]
    assert set(renamed["method"]) == {"adagrad_renamed"}
    assert set(renamed["variant"]) == {"renamed"}
    assert "adagrad" not in set(curves["method"])
    assert "adagrad" not in set(pd.read_csv(out / "logreg_mnist" / "best.csv")["method"])
    assert renamed["train_loss"].fillna(-1).tolist() == was["train_loss"].fillna(-1).tolist()


def _comparable(folder: Path) -> pd.DataFrame:
    curves = pd.read_csv(folder / "curves.csv").drop(columns=VOLATILE)
    return curves.sort_values(["run_id", "epoch"]).reset_index(drop=True)


def _slow_config(tmp_path: Path) -> Path:
    """The smoke config with more passes, so that a kill lands mid-sweep."""
    config = yaml.safe_load(CONFIG.read_text())
    config["scales"]["smoke"] = {"epochs": 4, "train_size": 4096, "test_size": 512,
                                 "extend_edges": 0}
    path = tmp_path / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_sigkill_then_rerun_equals_an_uninterrupted_sweep(tmp_path, data_dir, sigkill_once):
    """Killed once a group's records are all written: the rerun reads that group's runs
    back and trains the others (a group whose records were being written when the kill
    came trains again whole, plan.py `unfinished`), to the tables of an uninterrupted sweep."""
    from adamrepro.config import load_experiment
    from adamrepro.runner.plan import plan

    config = _slow_config(tmp_path)
    command = [sys.executable, "-m", "adamrepro", "run", str(config), "--scale", "smoke",
               "--quiet", "--data-dir", str(data_dir)]
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True,
                   capture_output=True)

    out = tmp_path / "killed"
    runs = out / "logreg_mnist" / "runs"
    groups = [[run.run_id for run in group.runs]
              for group in plan(load_experiment(config).at_scale("smoke"))]

    def whole_groups() -> list[list[str]]:
        recorded = {path.stem for path in runs.glob("*.json")}
        return [ids for ids in groups if recorded.issuperset(ids)]

    sigkill_once(command + ["--out", str(out)], runs, "", ready=lambda: bool(whole_groups()))
    finished = sum(map(len, whole_groups()))
    assert 0 < finished < RUNS and not (out / "logreg_mnist" / "curves.csv").exists()

    rerun = subprocess.run(command + ["--out", str(out)], check=True, capture_output=True,
                           text=True)
    # went on: the finished groups' runs were read back, not trained again
    assert f"trained {RUNS - finished} runs, {finished} already finished" in rerun.stdout, \
        rerun.stdout
    pd.testing.assert_frame_equal(_comparable(out / "logreg_mnist"),
                                  _comparable(tmp_path / "whole" / "logreg_mnist"))


def test_a_lost_run_is_redone_identically(tmp_path, cli, data_dir):
    args = ("run", CONFIG, "--scale", "smoke", "--out", tmp_path, "--quiet",
            "--data-dir", data_dir)
    assert cli(*args)[0] == 0
    before = _comparable(tmp_path / "logreg_mnist")
    lost = sorted((tmp_path / "logreg_mnist" / "runs").glob("*.json"))[:4]
    for path in lost:
        path.unlink()
    code, out, _ = cli(*args)
    assert code == 0 and not out.startswith("trained 0 ")
    pd.testing.assert_frame_equal(_comparable(tmp_path / "logreg_mnist"), before)


def test_diverged_runs_are_marked_and_never_selected(tmp_path, cli, data_dir):
    config = yaml.safe_load(CONFIG.read_text())
    config["methods"] = {"sgd_nesterov": {
        "optimizer": "sgd_nesterov", "hparams": {"momentum": 0.9},
        "grid": {"lr": [0.05, 1.0e6]}}}  # 1e6 overflows float32 within a pass
    path = tmp_path / "diverge.yaml"
    path.write_text(yaml.safe_dump(config))
    code, _, _ = cli("run", path, "--scale", "smoke", "--out", tmp_path, "--quiet",
                     "--data-dir", data_dir)
    assert code == 0
    curves = pd.read_csv(tmp_path / "logreg_mnist" / "curves.csv")
    blown = curves[curves["lr"] == 1.0e6]
    assert blown["diverged"].iloc[-1] and blown["epoch"].max() == 1
    best = pd.read_csv(tmp_path / "logreg_mnist" / "best.csv")
    assert best["lr"].tolist() == [0.05]


def test_seeds_share_an_initialisation_across_methods(tmp_path, cli, data_dir):
    code, _, _ = cli("run", CONFIG, "--scale", "smoke", "--seeds", "2", "--out", tmp_path,
                     "--quiet", "--data-dir", data_dir)
    assert code == 0
    curves = pd.read_csv(tmp_path / "logreg_mnist" / "curves.csv")
    start = curves[curves["epoch"] == 0].groupby("seed")["train_loss_full"]
    assert (start.nunique() == 1).all()  # one init per seed, shared by every run
    assert start.first().nunique() == 2  # and the two seeds differ
    best = pd.read_csv(tmp_path / "logreg_mnist" / "best.csv")
    assert (best["n_seeds"] == 2).all() and best["final_train_loss_std"].notna().all()


def test_two_commands_on_one_folder_at_once(tmp_path, data_dir):
    config = _slow_config(tmp_path)
    command = [sys.executable, "-m", "adamrepro", "run", str(config), "--scale", "smoke",
               "--quiet", "--data-dir", str(data_dir)]
    subprocess.run(command + ["--out", str(tmp_path / "alone")], check=True,
                   capture_output=True)
    both = [subprocess.Popen(command + ["--out", str(tmp_path / "shared")],
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate()[0] for p in both]
    assert [p.returncode for p in both] == [0, 0]
    # The lock serialises them: one trains everything, the other finds it finished.
    assert sorted(o.split(" runs,")[0] for o in outputs) == ["trained 0", f"trained {RUNS}"]
    pd.testing.assert_frame_equal(_comparable(tmp_path / "shared" / "logreg_mnist"),
                                  _comparable(tmp_path / "alone" / "logreg_mnist"))


def test_committed_results_stay_writable_by_todays_config(tmp_path):
    """Options added to the config schema since the committed paper-scale results were made
    change the config's digest, not its runs: a config of another digest may still write
    there while it trains every run of the folder, the points its grid-edge extension added
    included (logreg_imdb's SGD went beyond lr 1.0); one that no longer does may not."""
    from adamrepro.config import load_experiment
    from adamrepro.errors import UserError
    from adamrepro.results.store import ResultStore
    from adamrepro.runner.extend import stored_extensions
    from adamrepro.runner.plan import plan

    other_digest = "0" * 12  # what an option added to the schema since would make of it
    for name in ("logreg_mnist", "logreg_imdb"):
        shutil.copytree(REPO / "results" / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("*.png", "*.pdf"))
        exp = load_experiment(REPO / "configs" / f"{name}.yaml").at_scale("paper")
        run_ids = {run.run_id for group in plan(exp) for run in group.runs}
        store = ResultStore(tmp_path, name)
        store.check_owner(other_digest, "paper", False, run_ids,
                          lambda curves, exp=exp: stored_extensions(exp, curves))
        stored = set(pd.read_csv(tmp_path / name / "curves.csv")["run_id"])
        with pytest.raises(UserError, match=f"different {name} config"):
            store.check_owner(other_digest, "paper", False, run_ids - {min(stored)},
                              lambda curves, exp=exp: stored_extensions(exp, curves))
        if stored - run_ids:  # without the extension's points it would refuse
            with pytest.raises(UserError, match=f"different {name} config"):
                store.check_owner(other_digest, "paper", False, run_ids)


# A command that takes the folder's lock (as `run` does) and holds it until killed.
HOLDS_THE_LOCK = """
import sys, time
from adamrepro.results.store import ResultStore
with ResultStore(sys.argv[1], "logreg_mnist").locked():
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_command_that_waited_for_a_removed_folder_still_keeps_others_out(tmp_path):
    """The first command records nothing and removes the folder it created, its lock file
    included (under the lock). The one that waited must then hold a lock a third command
    waits for: before, it held its lock on the removed file, and a third trained beside it."""
    import fcntl

    from adamrepro.results.store import ResultStore

    out = tmp_path / "out"
    store = ResultStore(out, "logreg_mnist")
    created = store.first_missing()
    with pytest.raises(RuntimeError), store.locked(), store.removed_if_left_empty(created):
        store.prepare()
        second = subprocess.Popen([sys.executable, "-c", HOLDS_THE_LOCK, str(out)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "waiting" in second.stderr.readline()
        raise RuntimeError("the first command failed before it recorded anything")
    try:
        assert second.stdout.readline() == "locked\n"
        with open(store.root / ".lock", "w") as third, pytest.raises(BlockingIOError):
            fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        second.kill()
        second.communicate()


def test_a_second_command_on_a_folder_says_it_waits_then_goes_on(tmp_path, data_dir):
    """Two commands on one results folder serialise on its lock: the one that waits says so
    (rather than sit silent), and trains once the other is done."""
    from adamrepro.results.store import ResultStore

    out = tmp_path / "out"
    with ResultStore(out, "logreg_mnist").locked():  # another command, writing there
        second = subprocess.Popen(
            [sys.executable, "-m", "adamrepro", "run", str(CONFIG), "--scale", "smoke",
             "--quiet", "--data-dir", str(data_dir), "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first_line = second.stderr.readline()
        assert first_line.startswith(f"adamrepro: note: another command is writing to "
                                     f"{out / 'logreg_mnist'}; waiting"), first_line
        assert second.poll() is None  # it waits
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert re.search(r"trained \d+ runs, 0 already finished", stdout), stdout


@pytest.mark.parametrize("refusal", ["ENOSYS", "ENOLCK"])
def test_a_folder_on_a_filesystem_without_file_locks_is_used_unlocked(
        refusal, cli, tmp_path, data_dir, monkeypatch):
    """A cluster's scratch space may take no file locks: Lustre mounted without `-o flock`
    says ENOSYS to flock, NFS without its lock daemon ENOLCK. Every `run` there was a
    traceback. It trains, having said once that the folder is unlocked. (flock is made to
    refuse as such a filesystem does: this machine has none.)"""
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(getattr(errno, refusal), os.strerror(getattr(errno, refusal)))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", CONFIG, "--scale", "smoke", "--quiet", "--data-dir",
                               data_dir, "--out", out)
    assert code == 0, stderr
    assert stderr.count("takes no file locks") == 1, stderr
    assert f"adamrepro: note: {out / 'logreg_mnist'}: its filesystem takes no file locks" in \
        stderr, stderr
    assert len(pd.read_csv(out / "logreg_mnist" / "best.csv")) > 0


def test_the_progress_bar_is_on_stderr_and_stdout_says_what_was_done(cli, tmp_path,
                                                                    data_dir):
    """`run ... > log` gets the line saying what was trained, not the bar's last frame
    (rich printed it to stdout when stdout was no terminal); and where stderr is no terminal
    either, no frame stands there (above a user error's one line, it made two). On a
    terminal the bar is drawn on stderr (tests/test_imdb.py, in a pseudo-terminal)."""
    code, stdout, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path,
                               "--data-dir", data_dir)
    assert code == 0, stderr
    assert stdout.startswith(f"trained {RUNS} runs") and stdout.count("\n") == 1, stdout
    assert "logreg_mnist (" not in stderr and "━" not in stderr, stderr


def test_a_log_gets_plain_progress_lines_with_an_eta(cli, tmp_path, data_dir, monkeypatch):
    """Where stderr is a file (a batch job's log, `nohup`), a long sweep said nothing until
    its end, hours at paper scale: it now says a plain line each $ADAMREPRO_PROGRESS_SECONDS
    (0 here: each pass), counts rising to the total, an ETA but in the last, no escape code;
    stdout keeps its one line. A process of its own: its workers' passes come through their
    queue (a process that has run torch.compile may not fork them: executors.py)."""
    monkeypatch.setenv("ADAMREPRO_PROGRESS_SECONDS", "0")
    done = subprocess.run([sys.executable, "-m", "adamrepro", "run", str(CONFIG), "--scale",
                           "smoke", "--out", str(tmp_path), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=600)
    code, stdout, stderr = done.returncode, done.stdout, done.stderr
    assert code == 0, stderr
    assert stdout.startswith(f"trained {RUNS} runs") and stdout.count("\n") == 1, stdout
    line = re.compile(r"adamrepro: logreg_mnist \(\d+ groups\): (\d+)/(\d+) \((\d+)%\), "
                      r"\d+:\d\d:\d\d elapsed(, eta (\d+:\d\d:\d\d|\?))?")
    said = [line.fullmatch(text) for text in stderr.splitlines()]
    assert said and all(said), stderr
    counts = [int(match[1]) for match in said]
    passes = yaml.safe_load(CONFIG.read_text())["scales"]["smoke"]["epochs"]
    assert {int(match[2]) for match in said} == {RUNS * passes}, stderr
    assert counts == sorted(set(counts)) and counts[-1] == RUNS * passes, stderr
    assert [bool(match[4]) for match in said] == [True] * (len(said) - 1) + [False], stderr
    assert "\x1b" not in stderr


@pytest.mark.parametrize("scale", ["paper", None, "quick"])
def test_the_paper_scale_on_a_cpu_is_said_to_be_a_gpu_s(cli, tmp_path, data_dir, scale):
    """`run mlp` on a laptop trains at the default scale, the paper's: hours, with nothing
    said; a note now names --scale quick (a budget of 0 minutes starts no group)."""
    code, _, stderr = cli("run", CONFIG, *(["--scale", scale] if scale else []),
                          "--device", "cpu", "--time-budget", "0", "--out", tmp_path,
                          "--data-dir", data_dir)
    assert code == 3, stderr
    said = "note: --scale paper (the default) is sized for a GPU; on a CPU, --scale quick"
    assert (said in stderr) == (scale != "quick"), stderr


@pytest.mark.parametrize("command", ["run", "bench"])
@pytest.mark.parametrize("value", ["often", "-1", "nan", "inf"])
def test_a_bad_progress_interval_is_one_line_before_anything(cli, tmp_path, data_dir,
                                                             monkeypatch, command, value):
    monkeypatch.setenv("ADAMREPRO_PROGRESS_SECONDS", value)
    code, stdout, stderr = cli(command, CONFIG, "--scale", "smoke", "--out", tmp_path / "out",
                               "--data-dir", data_dir)
    assert code == 2 and stdout == "", stderr
    assert stderr.startswith("adamrepro: error: ADAMREPRO_PROGRESS_SECONDS=") and \
        stderr.count("\n") == 1, stderr
    assert not (tmp_path / "out").exists()


def test_a_report_is_the_same_utf_8_whatever_the_locale(smoke, tmp_path, ascii_locale):
    """report.md says α: where the locale's encoding was ASCII or Latin-1, `report` was a
    traceback (UnicodeEncodeError). It now writes the same UTF-8 bytes there as anywhere."""
    from adamrepro.cli import main

    out = tmp_path / "out"
    shutil.copytree(smoke.parent, out)
    assert main(["report", "--out", str(out)]) == 0
    names = ("report.md", "report.html")

    def written() -> dict[str, bytes]:  # but the time each was generated at
        return {name: re.sub(rb"Generated \S+", b"Generated", (out / name).read_bytes())
                for name in names}

    before = written()
    assert "α" in before["report.md"].decode("utf-8")
    for name in names:
        (out / name).unlink()
    done = subprocess.run([sys.executable, "-m", "adamrepro", "report", "--out", str(out)],
                          env=ascii_locale, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert written() == before


def test_a_matplotlib_backend_the_environment_names_changes_no_figure(smoke, tmp_path):
    """The figures need no backend, but matplotlib checks $MPLBACKEND when imported: a name
    it does not know (a typo, another machine's setting) made `plot` and `report` tracebacks.
    They draw the same figures as without it, and report."""
    out = tmp_path / "out"
    shutil.copytree(smoke.parent, out)
    drawn = {path.name: path.read_bytes() for path in smoke.glob("*.png")}
    assert drawn
    for path in out.glob("*/*.png"):
        path.unlink()
    env = {**os.environ, "MPLBACKEND": "no-such-backend"}
    for command in (["plot", "logreg_mnist"], ["report"]):
        done = subprocess.run([sys.executable, "-m", "adamrepro", *command, "--out", str(out)],
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert {path.name: path.read_bytes() for path in (out / smoke.name).glob("*.png")} == drawn
