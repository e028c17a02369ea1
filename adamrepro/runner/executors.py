"""Where groups train: on this machine (default), or as Ray tasks on an existing cluster.

An executor takes the unfinished groups and yields `(group, curves)` as each finishes; the
driver (sweep.py) alone writes results, so resume and the results layout are the same
whichever executor ran the work. Both executors share what is done with one group
(`attempt`: train it from its checkpoint, and say so when it does not fit in memory, would
not finish within the time budget (`run --split-to-fit`), or the time budget stopped it) and
what the driver does with each outcome (`schedule`: halve a group that did not fit in memory
or in time, start no group once the budget is spent, then raise `BudgetSpent`);
they differ only in where `attempt` runs and how many groups run at once.

On a CPU the local executor trains several groups at once, each in a worker process with
one thread (`workers`; `run --workers`, by default one per thread torch may use): a step
of a small model is dozens of ops of a few microseconds each, which a second thread barely
shortens (1.31 against 1.16 ms for a logreg_mnist step on this project's 2 cores) while a
second process doubles the steps per second. The workers are forked once the data is
loaded, so they share its memory (it is only read). They run one thread each because GNU
OpenMP does not survive a fork: a forked child that starts a second OpenMP thread hangs.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import torch

from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError, note
from adamrepro.optim import OPTIMIZERS
from adamrepro.optim.resolve import resolve, user_code
from adamrepro.runner.checkpoint import Budget, BudgetSpent, CheckpointPolicy, TooSlow
from adamrepro.runner.group import FAKE_MEMORY_LIMIT, ClosureIgnored, RunCurve, train_group
from adamrepro.runner.host_memory import keep_freed_memory
from adamrepro.runner.plan import Group, halves
from adamrepro.stopping import STOP, signals_deferred

OnPass = Callable[[Group, int], None]
T = TypeVar("T")


def load_data(exp: Experiment, data_dir: Path, device: torch.device) -> TensorDataset:
    """The experiment's data (at its scale) on `device`, as the runner trains on it."""
    from adamrepro.data import DATASETS
    from adamrepro.data.download import check_data_folder

    check_data_folder(Path(data_dir))
    module = DATASETS[exp.dataset["name"]]
    opts = module.options(dict(exp.dataset), "dataset")
    return module.load(opts, Path(data_dir)).to(device)


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt at a group: its curves (it finished), or the pass after
    which the time budget stopped it at its checkpoint (`stopped`; 0: it did not start, the
    budget was spent first), or that it would not finish within the budget (`too_slow`, why:
    halve it, or leave a single run for the next command), or none of these: it did not fit
    in memory. Plain data, so that a Ray task hands it back to the driver as it is."""

    curves: list[RunCurve] | None = None
    stopped: int | None = None
    too_slow: str | None = None
    halve: bool = False  # with too_slow: a half could finish (else the group is left)

    @property
    def out_of_memory(self) -> bool:
        return self.curves is None and self.stopped is None and self.too_slow is None


def attempt(exp: Experiment, group: Group, data: TensorDataset,
            checkpoints: CheckpointPolicy | None,
            on_pass: Callable[[int], None] = lambda epoch: None) -> Outcome:
    """Train `group` on `data`, going on from its checkpoint if `checkpoints` keeps one, on
    whichever process holds the data (the driver's, or a Ray worker's)."""
    checkpoint = checkpoints.for_group(group.group_id) if checkpoints is not None else None
    try:
        return Outcome(curves=train_group(exp, group, data, on_pass, checkpoint=checkpoint))
    except BudgetSpent as stop:
        return Outcome(stopped=stop.checkpointed[group.group_id][1])
    except TooSlow as slow:
        return Outcome(too_slow=str(slow), halve=slow.halve)
    except ClosureIgnored as ignored:
        raise UserError(f"method {group.method!r}: {ignored}") from None
    except Exception as err:
        if not out_of_memory(err):
            blamed = blame_optimizer(exp, group, err)
            if blamed is None:
                raise
            raise UserError(blamed) from None
    # Out of the except block: the traceback's frames hold the group's tensors. What they
    # leave to the cycle collector is freed, and the cache emptied, by the process that
    # trained, so that the halves can use the memory.
    gc.collect()
    if data.train_x.device.type == "cuda":
        torch.cuda.empty_cache()
    return Outcome()


def schedule(groups: list[Group], epochs: int, device: torch.device,
             checkpoints: CheckpointPolicy | None, start: Callable[[Group, bool], None],
             finished: Callable[[], tuple[Group, Outcome]], capacity: int | None
             ) -> Iterator[tuple[Group, list[RunCurve]]]:
    """The driver's side of either executor. `start(group, must_start)` sets a group going
    (at most `capacity` at once; None: all), `finished()` waits for one and returns its
    outcome; the curves of each group that finished are yielded. A group that did not fit in
    memory, or in time, is replaced by its halves (at the front of the queue); a single run
    that would not finish in time is left for the next command. Once the time budget is
    spent, or a group stopped for it, no group starts; those running save a checkpoint and
    stop after their pass in progress (or earlier, when the budget would run out within
    their next pass), and when the last has returned `BudgetSpent` says which groups are
    checkpointed where. A command
    always trains something (a budget too short must still advance the sweep): while no
    group has trained a pass, the next starts whatever the budget, and is told so
    (`must_start`). A stop a signal asked for (../stopping.py) is a budget spent at once,
    without that exception."""
    budget = checkpoints.budget if checkpoints is not None else Budget()
    queue, running = list(groups), 0
    trained, left_over = False, False  # a pass trained; a group stopped before its end
    # a group stopped for the budget: too little was left for its next pass and a save, and
    # a group started now would build its model, evaluate and train a pass past the deadline
    # (one pass and a save over, minutes at paper scale)
    time_out = False
    checkpointed: dict[str, tuple[int, int]] = {}
    while True:
        while queue and (capacity is None or running < capacity):
            if STOP() or ((budget.spent() or time_out) and (trained or running)):
                break
            start(queue.pop(0), not trained and not running)
            running += 1
        if not running:
            break
        group, outcome = finished()
        running -= 1
        if outcome.out_of_memory:
            queue[:0] = split_after_oom(group, device, checkpoints)
        elif outcome.too_slow is not None:
            # it trained passes: past the deadline no group starts on must_start's account,
            # which would evaluate, train and save a pass after it, for a disk that is lost
            trained = True
            why = f"would not finish within the time budget ({outcome.too_slow})"
            if outcome.halve:
                queue[:0] = split(group, checkpoints, why)
            else:  # the groups after it may fit; the next command's budget starts afresh
                left_over = True
                what = ("a run" if group.size == 1 else
                        f"a group of {group.size} runs, nor a half of it,")
                print(f"adamrepro: {group.method}: {what} {why}; left for the next command",
                      file=sys.stderr)
        elif outcome.curves is None:
            left_over = True
            time_out = True
            if outcome.stopped:
                trained = True
                checkpointed[group.group_id] = (group.size, outcome.stopped)
        else:
            trained = True
            yield group, outcome.curves
    if queue or left_over:
        raise BudgetSpent(epochs, checkpointed)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` (None: left as they are) inside, restored
    after: the count is process-wide, and tests run commands in-process."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalExecutor:
    """Groups on this machine's device; the data is loaded once. One group after another in
    this process, or on a CPU with `workers` > 1 (or "auto": one per thread torch may use,
    at most one per group), that many at once in forked worker processes of one thread."""

    def __init__(self, data_dir: Path, device: torch.device, workers: int | str = 1) -> None:
        workers = parse_workers(str(workers))  # the one check, for the CLI and for callers
        if device.type != "cpu" and workers not in (1, "auto"):
            raise UserError(f"--workers {workers} trains groups in processes of their own "
                            f"on a CPU; on {device.type} use --workers 1 (one device trains "
                            f"one group at a time)")
        self.data_dir, self.device, self.workers = data_dir, device, workers
        self.data = None

    def prepare(self, exp: Experiment) -> None:
        """Load the data now, so missing data fails before anything is written; on a CPU,
        keep freed memory for the next step (host_memory.py; forked workers inherit it)."""
        keep_freed_memory(self.device)
        self.data = load_data(exp, self.data_dir, self.device)

    def width(self) -> int:
        """How many groups train at once, one thread each (1: one after another in this
        process, with its threads). Fixed by the settings, never by how many groups are
        left: the thread count changes a CPU's rounding, so the last group of a resumed
        sweep must train with the one thread it had in a worker."""
        if self.device.type != "cpu" or sys.platform != "linux":
            return 1
        return max(1, torch.get_num_threads() if self.workers == "auto" else self.workers)

    def processes(self, groups: int) -> int:
        """How many worker processes train `groups` groups: 1 means this process (with one
        thread where the width is more than 1: see `width`), also where a forked child could
        not run autograd (`forked_autograd_works`; `run` and `bench` alike), said in a note."""
        processes = 1 if groups < 2 else min(self.width(), groups)
        if processes > 1 and not forked_autograd_works():
            # the same curves (one thread, as in a worker), a width's times slower
            note(f"torch {torch.__version__} cannot run autograd in a process forked from "
                 f"this one (as once torch.compile has run here); training the {groups} "
                 f"groups in this process, one after another")
            return 1
        return processes

    def run(self, exp: Experiment, groups: list[Group], on_pass: OnPass,
            checkpoints: CheckpointPolicy | None = None
            ) -> Iterator[tuple[Group, list[RunCurve]]]:
        """Train every group; yield each with its curves as it finishes. A group that does
        not fit in device memory is cut in two and each half trained instead (again, until
        one fits; the halves are what is yielded). With `checkpoints`, each group saves and
        resumes from its checkpoint, and `BudgetSpent` stops the sweep once the budget is
        spent (at a group's checkpoint, or before the next group starts)."""
        # a SIGTERM stops its groups at their checkpoints; without any (`adamrepro bench`)
        # it stops the command at once, as before
        with STOP.accepted() if checkpoints is not None else nullcontext():
            yield from self._run(exp, groups, on_pass, checkpoints)

    def _run(self, exp: Experiment, groups: list[Group], on_pass: OnPass,
             checkpoints: CheckpointPolicy | None
             ) -> Iterator[tuple[Group, list[RunCurve]]]:
        processes = self.processes(len(groups))
        if processes > 1:
            yield from self._run_in_workers(exp, groups, on_pass, checkpoints, processes)
            return
        started: list[Group] = []

        # One at a time: a group trains when its outcome is asked for, right after it
        # started, so `schedule`'s budget check just before is the one that counts.
        def finished() -> tuple[Group, Outcome]:
            group = started.pop()
            return group, attempt(exp, group, self.data, checkpoints,
                                  lambda epoch: on_pass(group, epoch))

        with torch_threads(1 if self.width() > 1 else torch.get_num_threads()):
            yield from schedule(groups, exp.training.epochs, self.device, checkpoints,
                                lambda group, must_start: started.append(group), finished, 1)

    def _run_in_workers(self, exp: Experiment, groups: list[Group], on_pass: OnPass,
                        checkpoints: CheckpointPolicy | None, processes: int
                        ) -> Iterator[tuple[Group, list[RunCurve]]]:
        """`processes` groups at a time, each in a worker process; every pass a worker
        trains comes back through a queue, so progress is reported as it happens."""
        pending: dict[Future, Group] = {}
        known = {group.group_id: group for group in groups}
        with worker_pool(processes, self.data) as workers:
            def start(group: Group, must_start: bool) -> None:
                known[group.group_id] = group  # a half of a group that did not fit
                with signals_deferred(), _worker_deaths_said(group, checkpoints):
                    pending[workers.pool.submit(_attempt_in_worker, exp, group, checkpoints,
                                                must_start)] = group

            def finished() -> tuple[Group, Outcome]:
                group, future = next_finished(
                    pending, workers, lambda group_id, epoch: on_pass(known[group_id], epoch))
                with _worker_deaths_said(group, checkpoints):
                    return group, future.result()

            with STOP.told(workers.stop):
                yield from schedule(groups, exp.training.epochs, self.device, checkpoints,
                                    start, finished, processes)


@dataclass(frozen=True)
class Workers:
    """Forked worker processes of one thread (`pool`), the queue they report their passes
    on (`passes`: (key, pass) pairs), and the driver's stop request they watch (`stop`)."""

    pool: ProcessPoolExecutor
    passes: object
    stop: object


@contextmanager
def worker_pool(processes: int, data: TensorDataset) -> Iterator[Workers]:
    """`processes` workers forked at once, while `data` is there for them to inherit (read
    only: they share its memory); on the way out they are shut down, and killed first after
    an error, a Ctrl-C or a generator closed early, rather than waited for. `run`'s groups
    and the bench's reference loop train in them alike."""
    global _WORKER_DATA
    context = multiprocessing.get_context("fork")
    passes, stop = context.SimpleQueue(), context.Event()
    _WORKER_DATA = data
    pool = None
    try:
        with interrupts_held():
            pool = ProcessPoolExecutor(processes, mp_context=context,
                                       initializer=_start_worker, initargs=(passes, stop))
            # Start every worker now, while the data is in _WORKER_DATA to inherit.
            list(pool.map(_started, range(processes)))
    except BaseException:
        # the Ctrl-C held back while the workers forked: shut the pool down here, or the
        # interpreter's exit wakes its manager through a pipe already closed ("Exception
        # ignored ... Bad file descriptor")
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        _WORKER_DATA = None
    try:
        yield Workers(pool, passes, stop)
    except BaseException:
        for process in list(pool._processes.values()):
            process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def next_finished(pending: dict[Future, T], workers: Workers,
                  on_pass: Callable[[object, int], None]) -> tuple[T, Future]:
    """Wait for one of `pending`'s futures (removed from it, with what it was submitted
    for), handing every pass reported meanwhile to `on_pass(key, pass)`.

    A Ctrl-C or SIGTERM raised inside concurrent.futures' bookkeeping could leave a future's
    lock held (wait() takes them one by one), and the pool's manager thread, which needs it
    to hand a result over, then blocked the pool's shutdown for ever: a bench stopped by
    SIGTERM hung in CI. The stop is held back through those calls (signals_deferred) and
    raised between them, at most 0.05 s late (the wait's timeout: a second SIGTERM must stop
    the workers before their pass ends)."""
    while True:
        with signals_deferred():
            done, _ = wait(list(pending), timeout=0.05, return_when=FIRST_COMPLETED)
            while not workers.passes.empty():
                on_pass(*workers.passes.get())
        if done:
            future = done.pop()
            return pending.pop(future), future


@contextmanager
def _worker_deaths_said(group: Group, checkpoints: CheckpointPolicy | None):
    """A worker process killed outright (SIGKILL: the kernel's out-of-memory killer, most
    likely, since workers leave Ctrl-C and SIGTERM to the driver) breaks the pool, whose
    BrokenProcessPool was a traceback: one line, what is kept and what to do. Without
    `checkpoints` (`adamrepro bench`) nothing is kept: it said "run the same command again",
    which would time everything again, where the bench's reference loop said "try
    --workers 1" of the same death."""
    try:
        yield
    except BrokenProcessPool:
        died = (f"a worker process died while group {group.group_id} ({group.method}) "
                f"trained, killed outright (most likely by the kernel for want of memory: see "
                f"dmesg); ")
        if checkpoints is None:
            raise UserError(died + worker_death_advice()) from None
        raise UserError(
            died + "finished runs and saved checkpoints are kept: run the same command "
            "again, with --workers 1 or a smaller training.max_group_size if memory is "
            "short") from None


def worker_death_advice() -> str:
    """What to do when a worker died where nothing is kept (the bench's two sides)."""
    return "nothing was written: with --workers 1 one process trains, in less memory"


_WORKER_DATA: TensorDataset | None = None  # the data a forked worker trains on
_WORKER_PASSES = None  # the queue a worker reports its passes on


def worker_data() -> TensorDataset:
    """In a worker of `worker_pool`: the data it inherited from the driver."""
    return _WORKER_DATA


def report_pass(key: object, epoch: int) -> None:
    """In a worker of `worker_pool`: tell the driver that `key` trained pass `epoch`."""
    _WORKER_PASSES.put((key, epoch))


@contextmanager
def interrupts_held():
    """A Ctrl-C while processes fork would raise KeyboardInterrupt inside the interpreter's
    at-fork hooks, which drop it ("Exception ignored"), and the sweep would go on to its
    end. It is held back meanwhile, then handed to the handler it was meant for, where it
    stops the sweep."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    stopping = (signal.SIGINT, signal.SIGTERM)  # cli/interrupts.py STOPPING's
    previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum))
                for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held and callable(previous[held[0]]):
            previous[held[0]](held[0], None)


def _start_worker(passes, stop) -> None:
    """A worker's set-up: one thread (see the module's docstring), the driver's queue and
    stop request (../stopping.py), and a kill signal when the driver dies (kill -9 included),
    so that no orphan trains on and writes checkpoints beside a resumed sweep."""
    global _WORKER_PASSES
    torch.set_num_threads(1)
    _WORKER_PASSES = passes
    STOP.watch(stop)  # the driver's stop request, read after each pass
    # Ctrl-C and SIGTERM (sent to the process group) are the driver's to handle: it stops
    # the workers itself, and a worker that ended alone broke the pool first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the driver died before the signal was armed
        os._exit(1)


def forked_autograd_works() -> bool:
    """Whether a process forked from this one can run a backward pass. torch 2.14.1 refuses
    ("Unable to handle autograd's threading in combination with fork-based multiprocessing",
    at a worker's first backward) once this process has run torch.compile and then a
    backward (a group trained here with `compile_model`, a test suite); 2.9.1 and 2.13.0 do
    not. Asked of a forked probe, the one judge of every version (20-28 ms with MNIST
    loaded, on 2 cores)."""
    probe = multiprocessing.get_context("fork").Process(target=_backward_then_exit)
    with interrupts_held():
        probe.start()
    probe.join()
    return probe.exitcode == 0


def _backward_then_exit() -> None:
    """The probe: one thread, as a worker (GNU OpenMP does not survive a fork), and an exit
    that flushes none of the buffers it inherited from the driver."""
    torch.set_num_threads(1)
    try:
        torch.ones(1, requires_grad=True).sum().backward()
    except RuntimeError:
        os._exit(1)
    os._exit(0)


def _started(index: int) -> int:
    """Nothing: mapping it over the pool makes every worker start (and fork) at once."""
    return index


def _attempt_in_worker(exp: Experiment, group: Group, checkpoints: CheckpointPolicy | None,
                       must_start: bool) -> Outcome:
    if budget_spent_before_start(checkpoints, must_start):
        return Outcome(stopped=0)
    return attempt(exp, group, _WORKER_DATA, checkpoints,
                   lambda epoch: report_pass(group.group_id, epoch))


def budget_spent_before_start(checkpoints: CheckpointPolicy | None, must_start: bool) -> bool:
    """A group queued for a worker (or a Ray task) may start long after the driver
    submitted it: one that starts once the budget is spent trains nothing, unless it is the
    one the command must train."""
    return STOP() or (not must_start and checkpoints is not None
                      and checkpoints.budget.spent())


ALLOCATION_FAILED = ("out of memory", "can't allocate memory",
                     # cuBLAS's and cuDNN's own failures to allocate a workspace
                     "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def out_of_memory(err: BaseException) -> bool:
    """A device (or host) allocation failure, as opposed to any other error; also where it
    is the cause or context of the error raised (an allocation that fails while a CUDA graph
    is captured invalidates the capture, and the capture's end raises that instead)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, torch.OutOfMemoryError) or any(
                text in str(err) for text in ALLOCATION_FAILED):
            return True
        err = err.__cause__ or err.__context__
    return False


def blame_optimizer(exp: Experiment, group: Group, err: BaseException) -> str | None:
    """The one line that says a user's optimizer (not a built-in) raised `err` while its
    group trained, where, and what to do; None when the error is not its own: raised
    outside its module, or inside our code that it called (the closure that evaluates the
    model), whose traceback must show. It runs where the group trained, which alone holds
    the traceback (a worker process sends only the exception)."""
    name = exp.methods[group.method].optimizer
    try:
        found = resolve(name, OPTIMIZERS)
    except ValueError as missing:  # found where the config was read, not where it trained
        return (f"method {group.method!r}: {missing}, on the machine that trained it (a Ray "
                f"worker needs every package the config names)")
    if found.builtin:
        return None
    theirs = user_code(found.cls)
    ours = Path(__file__).resolve().parent.parent
    frames = traceback.extract_tb(err.__traceback__)
    files = [Path(frame.filename).resolve() for frame in frames]
    where = [i for i, file in enumerate(files) if theirs(file)]
    if not where or any(file.is_relative_to(ours) for file in files[where[-1]:]):
        return None
    frame = frames[where[-1]]
    # a step that wants a closure the config does not give says so in its own words (the
    # validation's call found nothing: it raises only once it has state, say)
    fix = ("give the method `closure: true` if its step needs a closure, or fix the "
           "optimizer, and run the same command again"
           if "closure" in str(err).lower() and not exp.methods[group.method].closure
           else "fix the optimizer and run the same command again")
    return (f"method {group.method!r}: optimizer {name!r} raised {type(err).__name__}: {err} "
            f"(in {frame.name}, {frame.filename}:{frame.lineno}) while training {group.size} "
            f"run(s); the runs that finished before are kept: {fix}")


def split_after_oom(group: Group, device: torch.device,
                    checkpoints: CheckpointPolicy | None) -> list[Group]:
    """The two halves of a group that did not fit; a single run that does not fit is a
    user error (a smaller model, batch or device setting is needed), not a crash."""
    if group.size == 1:
        # its checkpoint is kept: the memory may have been another process's for a while
        # (a shared GPU), and the next command resumes it where it fits (SFO's run at paper
        # scale saves minutes of passes); the finished sweep removes it if it is stale
        saved = checkpoints is not None and checkpoints.path(group.group_id).exists()
        raise UserError(f"one run of {group.method} does not fit in {device} memory"
                        + (" (its checkpoint is kept)" if saved else "")
                        + "; use a smaller model or eval_batch_size, or a larger device, or "
                          "run again once the memory is free")
    return split(group, checkpoints, f"does not fit in {device} memory")


def split(group: Group, checkpoints: CheckpointPolicy | None, why: str) -> list[Group]:
    """The two halves of `group`, said on one line of stderr with `why`."""
    if checkpoints is not None:  # the halves are other groups: this checkpoint is dead
        checkpoints.path(group.group_id).unlink(missing_ok=True)
    parts = halves(group)
    print(f"adamrepro: {group.method}: a group of {group.size} runs {why}; training it as "
          f"{parts[0].size} + {parts[1].size}", file=sys.stderr)
    return parts


def _attempt_remote(exp_json: str, group: Group, data_dir: str, device: str,
                    checkpoints: CheckpointPolicy | None, must_start: bool) -> Outcome:
    """A Ray task: load the data on the worker and attempt one group there."""
    if budget_spent_before_start(checkpoints, must_start):
        return Outcome(stopped=0)
    exp = Experiment.model_validate_json(exp_json)
    target = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
    keep_freed_memory(target)
    return attempt(exp, group, load_data(exp, Path(data_dir), target), checkpoints)


class RayExecutor:
    """Each group is a Ray task on an existing cluster (or a local instance when no address
    is given), with the local executor's checkpoints, time budget and automatic split.
    Workers need adamrepro installed, and the data folder and the results folder at the
    same paths as the driver (a shared filesystem): they read the data there and write each
    group's checkpoint where the driver looks for it."""

    def __init__(self, data_dir: Path, device: torch.device, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'adamrepro[ray]'") from None
        self.ray, self.data_dir, self.device, self.address = ray, data_dir, device, address

    def prepare(self, exp: Experiment) -> None:
        from adamrepro.data import DATASETS

        DATASETS[exp.dataset["name"]].fetch(Path(self.data_dir))  # fail fast on the driver
        if self.address and self.address != "auto":
            _check_reachable(self.address)
        if not self.ray.is_initialized():
            # The simulated out-of-memory limit (a test hook, group.py) reaches the workers.
            limit = os.environ.get(FAKE_MEMORY_LIMIT)
            runtime_env = {"env_vars": {FAKE_MEMORY_LIMIT: limit}} if limit else None
            # ray.init puts its own SIGTERM handler in the driver, which ended the command
            # with its core worker's crash report (exit 134), not ours (what is kept, 143)
            ours = {signum: signal.getsignal(signum) for signum in (signal.SIGINT,
                                                                   signal.SIGTERM)}
            try:
                self.ray.init(address=self.address, include_dashboard=False,
                              log_to_driver=False, logging_level="ERROR",
                              runtime_env=runtime_env)
            except ConnectionError as err:
                raise UserError(f"--address {self.address}: no Ray cluster there ({err}); "
                                f"start one with 'ray start --head' or drop --address") from None
            finally:
                for signum, handler in ours.items():
                    if handler is not None:  # None: not set from Python; nothing to restore
                        signal.signal(signum, handler)

    def run(self, exp: Experiment, groups: list[Group], on_pass: OnPass,
            checkpoints: CheckpointPolicy | None = None
            ) -> Iterator[tuple[Group, list[RunCurve]]]:
        """Every group at once, as Ray tasks (Ray queues what the cluster cannot run yet, and
        an autoscaler sees the whole demand); the halves of a group that did not fit, as
        soon as it says so. The driver reports a group's passes once it has stored them
        (sweep.py), not while a worker trains it."""
        ray = self.ray
        gpu = self.device.type == "cuda"
        task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0)(_attempt_remote)
        exp_json, data_dir = exp.model_dump_json(), str(Path(self.data_dir).resolve())
        if checkpoints is not None:  # a worker's working folder is not the driver's
            checkpoints = replace(checkpoints, folder=Path(checkpoints.folder).resolve())
        pending = {}

        def start(group: Group, must_start: bool) -> None:
            ref = task.remote(exp_json, group, data_dir, self.device.type, checkpoints,
                              must_start)
            pending[ref] = group

        def finished() -> tuple[Group, Outcome]:
            done, _ = ray.wait(list(pending), num_returns=1)
            try:
                return pending.pop(done[0]), ray.get(done[0])
            except UserError as err:  # Ray's wrapper around it, whose text is a traceback
                raise UserError(str(getattr(err, "cause", err))) from None

        yield from schedule(groups, exp.training.epochs, self.device, checkpoints, start,
                            finished, None)


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes; a plain TCP connect fails at once."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:  # Python's int() text said nothing
        raise UserError(f"--address {address}: give HOST:PORT (a port from 1 to 65535), e.g. "
                        f"--address 10.0.0.1:6379 or ray://10.0.0.1:10001")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise UserError(f"--address {address}: no Ray cluster answers there ({err}); start "
                        f"one with 'ray start --head' or drop --address") from None


def check_executor_flags(name: str, address: str | None, workers: int | str) -> None:
    """The flags that go with one executor only (a dry run refuses them as the run does)."""
    if name == "ray" and workers not in (1, "auto"):
        raise UserError("--workers is for --executor local; Ray runs as many groups at "
                        "once as its cluster has CPUs or GPUs")
    if name != "ray" and address is not None:
        raise UserError("--address goes with --executor ray")
    if address is not None and not address.strip():  # a script's unset "$RAY_ADDRESS"
        raise UserError("--address: an empty address; give HOST:PORT, or drop --address "
                        "for a local Ray instance")


def make_executor(name: str, data_dir: Path, device: torch.device, address: str | None,
                  workers: int | str = 1):
    check_executor_flags(name, address, workers)
    if name == "ray":
        return RayExecutor(data_dir, device, address)
    return LocalExecutor(data_dir, device, workers)


def parse_workers(value: str) -> int | str:
    """`--workers`: auto, or a number of processes."""
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UserError(f"--workers {value}: give a number of processes (1 or more) or auto")
    return number
