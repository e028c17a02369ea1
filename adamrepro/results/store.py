"""The results folder of one experiment, `<out>/<experiment>/`:

    runs/<run_id>.json   one finished run: its spec, provenance and curve (written atomically)
    runs/<run_id>.pt     its final parameters, for configs with training.save_params
    runs/<group_id>.ckpt.pt  a group's state mid-way (training.checkpoint_every, run
                         --time-budget; runner/checkpoint.py), removed once its runs are
                         stored, or once a sweep completes if its group is not in the plan
                         (sweep.remove_stale_checkpoints)
    curves.csv           tidy: one row per run per pass, for the runs of the last command
                         (this and the next three: tables.py)
    steps.csv            with `training.log_every`: one row per run per block of that many
                         steps (the mean minibatch objective of the block)
    best.csv             the selected grid point per method (see select.py)
    config.json          the resolved config that ran, with provenance
    .lock                held while a command writes here

Every file is written to a temporary name and renamed, so none is ever half-written, and a
killed sweep resumes from the runs that finished.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from adamrepro.atomic import atomic_file, atomic_set, atomic_torch_save, atomic_write
from adamrepro.errors import UserError, note
from adamrepro.results.tables import (
    OWNER,
    TABLES,
    config_in,
    read_table,
    recorded_precision,
)
from adamrepro.stopping import signals_deferred

# What flock says on a filesystem without file locks (Lustre mounted without `-o flock`, NFS
# without its lock daemon, some FUSE mounts): a cluster's scratch space, where every `run` was
# a traceback. The lock only keeps two commands on one folder apart, so such a folder is used
# unlocked, said once.
NO_FILE_LOCKS = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP})


def check_writable(folder: Path) -> None:
    """Fail before any work is done if `folder` (given by --out) cannot be made or written."""
    path = folder
    while not path.exists():
        if path.is_symlink():  # exists() says False of a link to nothing, or in a loop
            raise UserError(f"cannot write results to {folder}: {path} is a symbolic link to "
                            f"{os.readlink(path)}, {_broken_link(path)}; correct or remove "
                            f"the link, or pass --out to another folder")
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write results to {folder}: {path} is not a writable folder; pass "
            f"--out to a writable folder"
        )
    if path != folder:  # to be made: some folders say yes to access() and no to mkdir (/proc)
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".adamrepro-probe-", dir=path))
        except OSError as err:
            raise UserError(f"cannot write results to {folder}: {path} takes no new folder "
                            f"({err.strerror}); pass --out to a writable folder") from None


def _broken_link(path: Path) -> str:
    """Why the symbolic link `path` leads nowhere, in words."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "which leads back to itself"
    return "which does not exist"


def _same_file(handle, path: Path) -> bool:
    """Whether the open `handle` is still the file at `path` (not removed or replaced)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


class ResultStore:
    def __init__(self, out: Path, experiment: str, params: bool = False) -> None:
        self.root = Path(out) / experiment
        self.runs_dir = self.root / "runs"
        # training.save_params: a run is done once its parameters are kept too (a config
        # that turned it on after its runs finished got none, and no figure that needs them)
        self.params = params

    def check_writable(self) -> None:
        """Fail before anything is written (or trained) if the folder, or one of its tables,
        cannot be written."""
        check_writable(self.root)
        for name in TABLES:
            if (self.root / name).is_dir():
                raise UserError(f"cannot write results to {self.root}: {self.root / name} is "
                                f"a folder where a table goes; move it away, or pass --out "
                                f"to another folder")

    def _records_scale(self) -> str | None:
        """The scale of the first run record here (None: none, or none readable)."""
        first = min(self.runs_dir.glob("*.json"), default=None) if self.runs_dir.is_dir() \
            else None
        try:
            record = json.loads(first.read_text(encoding="utf-8")) if first else None
        except (OSError, ValueError):
            return None
        return record.get("scale") if isinstance(record, dict) else None

    def check_owner(self, digest: str, scale: str, force: bool, run_ids: set[str],
                    extensions: Callable[[pd.DataFrame], set[str]] = lambda curves: set(),
                    only_selected: Path | None = None, precision: str = "fp32",
                    seeds: int | None = None) -> None:
        """Refuse to mix into a folder written by a different config, or to replace its
        tables with another scale's (unless forced): a quick run must not silently
        overwrite paper-scale results. A config that differs only in what does not change
        any run (a title, a variant label, options added to adamrepro since) and still trains
        every run of the folder's tables (`run_ids`, and the ids `extensions(curves)` gives
        the stored runs its grid-edge extension added) may write there. A run of the points
        `only_selected` selected (`run --only-selected`) may not write over a whole sweep's
        tables: they would hold the selected points alone. Nor may a run of fewer `seeds`
        than the tables hold (its tables would drop the others' curves), same config or not."""
        path = self.root / "config.json"
        if not path.exists():  # no sweep finished here: the one that started here, if any
            path = self.root / OWNER
            if not self._anything_trained():
                # cut off before its first record or checkpoint: nothing of it to protect
                # (it was said to "hold results of a different config"), and this command's
                # claim replaces it
                return
        if not path.exists():
            # config.json deleted by hand: its run records still say their scale, and a run
            # of another scale would write its tables over theirs
            held = self._records_scale()
            if held not in (None, scale) and not force:
                raise UserError(
                    f"{self.root} holds {held}-scale run records; write {scale}-scale ones to "
                    f"another folder (e.g. --out results/{scale}), or pass --force to replace "
                    f"its tables with them")
            return
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):  # damaged since: written whole (atomic_file)
            if not force:
                raise UserError(
                    f"{path} is damaged (not the JSON object this package writes); pass "
                    + ("--force to write the folder's tables again from its run records"
                       if path.name == "config.json" else
                       "--force to go on with this command's config and scale (it says which "
                       "ones own this unfinished sweep; the run records stay)"))
            previous = {}
        if only_selected is not None and previous and "points_selected_in" not in previous:
            raise UserError(f"{self.root} holds a whole sweep of {self.root.name}; "
                            f"--only-selected {only_selected} would rewrite its tables with "
                            f"the selected points alone: give another --out")
        if only_selected is None and previous.get("points_selected_in"):
            # the other way round: the sweep took them for its own runs, trained in other
            # groups (with dropout, other masks), and `compare` no longer knew
            raise UserError(f"{self.root} holds only the points selected in "
                            f"{previous['points_selected_in']} (run --only-selected), trained "
                            f"in groups of their own; a whole sweep would take them for its "
                            f"own runs: give another --out")
        if force:
            return
        held = previous.get("experiment")
        if isinstance(held, str) and held != self.root.name:  # a folder copied or renamed
            raise UserError(f"{self.root} holds results of {held}, not of {self.root.name}; "
                            f"pass --out to another folder, or move it back to "
                            f"{self.root.parent / held}")
        within = functools.cache(lambda: self._runs_within(run_ids, extensions))
        if previous.get("base_digest") != digest and not within():
            before = recorded_precision(previous)
            if before != precision:  # the usual case: `run --precision` into the fp32 folder
                raise UserError(
                    f"{self.root} holds {before} results of {self.root.name}, and this run is "
                    f"{precision}: give it its own --out, then 'adamrepro compare' the two "
                    f"folders")
            raise UserError(
                f"{self.root} holds results of a different {self.root.name} config; pass --out "
                f"to another folder, or --force to add to it (runs are keyed by their settings)"
            )
        if previous.get("scale", scale) != scale:
            if path.name == OWNER:  # no tables yet: --force would throw its progress away
                saved = len(list(self.runs_dir.glob("*.ckpt.pt")))
                raise UserError(
                    f"{self.root} holds an unfinished {previous['scale']}-scale sweep"
                    + (f" ({saved} checkpoint{'s' if saved != 1 else ''})" if saved else "")
                    + f"; finish it with --scale {previous['scale']}, write {scale}-scale ones "
                    f"to another folder (e.g. --out results/{scale}), or pass --force to "
                    f"discard it")
            raise UserError(
                f"{self.root} holds {previous['scale']}-scale results; write {scale}-scale ones "
                f"to another folder (e.g. --out results/{scale}), or pass --force to replace "
                f"its tables with them"
            )
        # last: another config or scale is the mistake to name first, whose fix is not
        # --seeds
        held = config_in(previous).get("seeds")
        if seeds is not None and isinstance(held, int) and held > seeds:
            if path.name == OWNER:  # no tables yet: the others' checkpoints would go as stale
                raise UserError(
                    f"{self.root} holds an unfinished sweep of {held} seeds per grid point, "
                    f"and this run trains {seeds}: the checkpoints of the others would be "
                    f"removed as stale when it ends; pass --seeds {held}, --out to another "
                    f"folder, or --force to discard them")
            if not within():
                raise UserError(
                    f"{self.root} holds {held} seeds per grid point, and this run trains "
                    f"{seeds}: its tables would drop the others; pass --seeds {held}, or --out "
                    f"to another folder")

    def claim(self, digest: str, scale: str, precision: str,
              only_selected: Path | None = None, seeds: int | None = None) -> None:
        """Say which config and scale this folder's runs belong to before its first table
        exists (`OWNER`): a sweep cut off before it wrote config.json (a kill, a time budget)
        still refuses a command of another scale or config, which would otherwise find no
        config.json and take its checkpoints for stale."""
        if (self.root / "config.json").exists():
            return
        # the seeds too: a command of fewer took the others' checkpoints for stale
        owner = {"base_digest": digest, "scale": scale,
                 "config": {"training": {"precision": precision},
                            **({"seeds": seeds} if seeds is not None else {})},
                 **({"points_selected_in": str(only_selected)} if only_selected else {})}
        with atomic_file(self.root / OWNER) as f:
            f.write(json.dumps(owner) + "\n")

    @contextlib.contextmanager
    def cleaned_on_error(self):
        """On an error, this command's temporary files removed before the lock is let go: a
        worker killed while it wrote a checkpoint (the command stopping on another's error)
        left its `.NAME.*.tmp` until the next command began."""
        try:
            yield
        except BaseException:
            self.remove_temporary_files()
            raise

    def remove_temporary_files(self) -> int:
        """Remove the temporary files of writes a kill cut off (atomic_file's `.NAME.*.tmp`:
        tables, run records, parameters, checkpoints); only under the lock, which every
        command that writes these holds, so none is another command's work in progress.
        `plot` writes its figures here without the lock: theirs are left alone."""
        stale = [*(path for name in (*TABLES, OWNER) for path in self.root.glob(f".{name}.*.tmp")),
                 *self.runs_dir.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def _anything_trained(self) -> bool:
        """Whether `runs/` holds a run record or a checkpoint."""
        return any(self.runs_dir.glob("*.json")) or any(self.runs_dir.glob("*.ckpt.pt"))

    def _runs_within(self, run_ids: set[str],
                     extensions: Callable[[pd.DataFrame], set[str]]) -> bool:
        """Whether every run in the folder's curves.csv is one of `run_ids` or of
        `extensions(curves)`; before any table (a sweep cut off), whether every stored run
        record is one of `run_ids` and no group is checkpointed mid-way (its runs are not
        known here, and a config that lost them would take the checkpoint for stale)."""
        if not (self.root / "config.json").exists():
            records = {path.stem for path in self.runs_dir.glob("*.json")}
            return (bool(records) and records <= run_ids
                    and not any(self.runs_dir.glob("*.ckpt.pt")))
        try:
            curves = read_table(self.root / "curves.csv")
        except (OSError, ValueError):
            return False
        stored = set(curves["run_id"]) if "run_id" in curves else set()
        return bool(stored) and stored <= run_ids | extensions(curves)

    def prepare(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where the folder of run records goes
            raise UserError(f"{self.runs_dir} is a file where the folder of run records goes; "
                            f"move it away, or pass --out to another folder") from None
        except OSError as err:
            raise UserError(
                f"cannot write results to {self.root} ({err.strerror}); pass --out to a "
                f"writable folder"
            ) from None

    def first_missing(self) -> Path | None:
        """The outermost folder of the experiment's path that does not exist yet."""
        return next((p for p in (*reversed(self.root.parents), self.root) if not p.exists()),
                    None)

    @contextlib.contextmanager
    def removed_if_left_empty(self, created: Path | None):
        """A command that fails before it records anything (a user's optimizer that raises,
        Ctrl-C in the first group) leaves no folder it created (`created`, its
        `first_missing()` before it began): nothing half-written. A folder that existed
        before, or holds a record or a checkpoint, stays as it is. Entered under the lock,
        which the lock file's removal then leaves to no one (`locked`)."""
        try:
            yield
        except BaseException:
            if created is not None:
                with signals_deferred():  # a second Ctrl-C: after the folder is gone
                    self._remove_empty(created)
            raise

    def _remove_empty(self, created: Path) -> None:
        try:
            self.runs_dir.rmdir()  # fails when it holds anything
        except FileNotFoundError:
            pass
        except OSError:
            return
        (self.root / ".lock").unlink(missing_ok=True)
        (self.root / OWNER).unlink(missing_ok=True)
        for folder in (self.root, *self.root.parents):
            try:
                folder.rmdir()
            except OSError:
                return
            if folder == created:
                return

    @contextlib.contextmanager
    def locked(self):
        """Hold an exclusive lock on the folder; a second command waits for the first. The
        first may remove the folder it created and recorded nothing in, lock file included
        (`removed_if_left_empty`): a lock then taken on the removed file keeps no one out, so
        the waiter takes one on a new file instead."""
        said = False
        while True:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / ".lock"
            handle = open(path, "w")
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # say why nothing moves, then wait
                    if not said:
                        note(f"another command is writing to {self.root}; waiting for it to "
                             f"finish (its finished runs are then skipped)")
                        said = True
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except OSError as err:
                    if err.errno not in NO_FILE_LOCKS:
                        raise
                    note(f"{self.root}: its filesystem takes no file locks ({err.strerror}); "
                         f"going on unlocked: run one command at a time on this folder")
                    yield
                    return
                if _same_file(handle, path):
                    try:
                        yield
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                    return
            finally:
                handle.close()

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def is_done(self, run_id: str) -> bool:
        return self.run_path(run_id).exists() and (not self.params
                                                   or self.params_path(run_id).exists())

    def save_run(self, record: dict) -> None:
        atomic_write(self.run_path(record["run_id"]),
                     json.dumps({**record, "digest": record_digest(record)}))

    def params_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.pt"

    def save_params(self, run_id: str, params: dict) -> None:
        """A run's final parameters (training.save_params): a dict of tensors, read back
        with torch.load(path, weights_only=True)."""
        atomic_torch_save(params, self.params_path(run_id))

    def load_run(self, run_id: str, epochs: int | None = None) -> dict:
        """Run `run_id`'s record, checked to be one a run of `epochs` passes writes (when
        given): a hand edit is one line naming the record, never a table the readers then
        refuse, which `run --force` would only write again."""
        path = self.run_path(run_id)
        fix = "delete it and run the same command again, which trains that run again"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:  # written whole (atomic_file): damaged since
            raise UserError(f"{path} is damaged ({type(err).__name__}); {fix}") from None
        problem = record_problem(record, run_id, epochs)
        if problem is not None:
            raise UserError(f"{path} is damaged ({problem}); {fix}")
        return record

    def write_tables(self, tables: dict[str, pd.DataFrame], meta: dict) -> None:
        """The experiment's tables and its config.json, as one set (atomic_set); config.json
        then says who owns the folder, not `OWNER`."""
        texts = {name: frame.to_csv(index=False) for name, frame in tables.items()}
        # what config.json lists, so that a reader can tell a mix of two sets (a kill
        # between the renames) from one set (read_results)
        listed = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()}
        atomic_set({**{self.root / name: text for name, text in texts.items()},
                    self.root / "config.json": json.dumps({**meta, "tables": listed}, indent=2,
                                                          default=str) + "\n"})
        # a table of an earlier set that this one has not (steps.csv of a run with
        # `training.log_every`): config.json no longer lists it, so no reader takes it
        # (read_steps) even if a kill comes first; removed so nobody else does
        for name in TABLES:
            if name != "config.json" and name not in texts and (self.root / name).is_file():
                (self.root / name).unlink(missing_ok=True)
        (self.root / OWNER).unlink(missing_ok=True)


RECORD_NEEDED = ("experiment", "scale", "method", "optimizer", "run_id", "point_id", "seed")


def is_run_record(record) -> bool:
    """Whether `record` has what the tables are made of (`curves_frame`)."""
    return (isinstance(record, dict) and all(key in record for key in RECORD_NEEDED)
            and isinstance(record.get("hparams"), dict)
            and isinstance(record.get("provenance"), dict)
            and all(key in record["provenance"] for key in ("commit", "torch_version", "device"))
            and isinstance(record.get("rows"), list)
            and all(isinstance(row, dict) for row in record["rows"]))


def record_digest(record: dict) -> str:
    """SHA-256 of a run record without its `digest`: a record edited by hand (its curve, its
    hyperparameters) would otherwise go into the tables, and the verdicts, as measured."""
    body = {key: value for key, value in record.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def record_problem(record, run_id: str, epochs: int | None) -> str | None:
    """What makes `record` no record of run `run_id` trained for `epochs` passes (None: not
    checked), or None: its rows are passes 0, 1, ... of numbers, up to the last pass unless
    the run diverged."""
    if not is_run_record(record):  # JSON, but not what a run writes
        return "not a run record"
    if record["run_id"] != run_id:
        return f"its run_id is {record['run_id']!r}, not the one its file name says"
    if type(record["seed"]) is not int:
        return "its seed is no whole number"
    if not isinstance(record.get("diverged", False), bool):
        return "its 'diverged' is neither true nor false"
    rows = record["rows"]
    if [row.get("epoch") for row in rows] != list(range(len(rows))) or not rows:
        return "its rows are not passes 0, 1, 2, ... in order"
    for row in rows:
        text = next((key for key, value in row.items()
                     if not (value is None or isinstance(value, (int, float)))), None)
        if text is not None or "seconds" not in row:
            return f"{text or 'no seconds'!r} at pass {row['epoch']}, not a number"
    last = len(rows) - 1
    if epochs is not None and last > epochs:  # diverging would not explain it
        return f"it ends at pass {last}, after the last of {epochs}"
    if epochs is not None and last < epochs and not record.get("diverged"):
        return f"it ends at pass {last} of {epochs} without diverging"
    if "digest" in record and record["digest"] != record_digest(record):  # older ones lack it
        return "edited since it was written: its digest does not match"
    return None
