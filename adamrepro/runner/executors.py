"""Where groups train: in this process (default), or as Ray tasks on an existing cluster.

An executor takes the unfinished groups and yields `(group, curves)` as each finishes; the
driver (sweep.py) alone writes results, so resume and the results layout are the same
whichever executor ran the work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.runner.checkpoint import BudgetSpent, CheckpointPolicy
from adamrepro.runner.group import RunCurve, train_group
from adamrepro.runner.plan import Group, halves

OnPass = Callable[[Group, int], None]


def load_data(exp: Experiment, data_dir: Path, device: torch.device) -> TensorDataset:
    """The experiment's data (at its scale) on `device`, as the runner trains on it."""
    from adamrepro.data import DATASETS

    module = DATASETS[exp.dataset["name"]]
    opts = module.options(dict(exp.dataset), "dataset")
    return module.load(opts, Path(data_dir)).to(device)


class LocalExecutor:
    """One group after another on this machine's device; the data is loaded once."""

    def __init__(self, data_dir: Path, device: torch.device) -> None:
        self.data_dir, self.device = data_dir, device
        self.data = None

    def prepare(self, exp: Experiment) -> None:
        """Load the data now, so missing data fails before anything is written."""
        self.data = load_data(exp, self.data_dir, self.device)

    def run(self, exp: Experiment, groups: list[Group], on_pass: OnPass,
            checkpoints: CheckpointPolicy | None = None
            ) -> Iterator[tuple[Group, list[RunCurve]]]:
        """Train each group in turn; yield it with its curves. A group that does not fit in
        device memory is cut in two and each half trained instead (again, until one fits;
        the halves are what is yielded). With `checkpoints`, each group saves and resumes
        from its checkpoint, and `BudgetSpent` stops the sweep once the budget is spent
        (at a group's checkpoint, or before the next group starts)."""
        queue, started = list(groups), False
        while queue:
            group = queue.pop(0)
            # a command always trains something, so that a budget too short still advances
            if started and checkpoints is not None and checkpoints.budget.spent():
                raise BudgetSpent(group.group_id, 0, exp.training.epochs)
            started = True
            checkpoint = checkpoints.for_group(group.group_id) if checkpoints else None
            try:
                curves = train_group(exp, group, self.data, lambda e, g=group: on_pass(g, e),
                                     checkpoint=checkpoint)
            except RuntimeError as err:
                if not out_of_memory(err):
                    raise
                curves = None
            if curves is None:  # out of the except block: its frames hold the group's tensors
                queue[:0] = split_after_oom(group, self.device, checkpoints)
                continue
            yield group, curves


def out_of_memory(err: BaseException) -> bool:
    """A device (or host) allocation failure, as opposed to any other error."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return "out of memory" in text or "can't allocate memory" in text


def split_after_oom(group: Group, device: torch.device,
                    checkpoints: CheckpointPolicy | None) -> list[Group]:
    """The two halves of a group that did not fit; a single run that does not fit is a
    user error (a smaller model, batch or device setting is needed), not a crash."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if checkpoints is not None:  # the halves are other groups: this checkpoint is dead
        checkpoints.path(group.group_id).unlink(missing_ok=True)
    if group.size == 1:
        raise UserError(f"one run of {group.method} does not fit in {device} memory; use a "
                        f"smaller model or eval_batch_size, or a larger device")
    parts = halves(group)
    print(f"adamrepro: {group.method}: a group of {group.size} runs does not fit in "
          f"{device} memory; training it as {parts[0].size} + {parts[1].size}",
          file=sys.stderr)
    return parts


def _train_remote(exp_json: str, group: Group, data_dir: str, device: str) -> list[RunCurve]:
    """A Ray task: load the data on the worker and train one group there."""
    exp = Experiment.model_validate_json(exp_json)
    target = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
    return train_group(exp, group, load_data(exp, Path(data_dir), target))


class RayExecutor:
    """Each group is a Ray task on an existing cluster (or a local instance when no address
    is given). Workers need adamrepro installed and the data folder at the same path (a
    shared filesystem), or network access to download it."""

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
            try:
                self.ray.init(address=self.address, include_dashboard=False,
                              log_to_driver=False, logging_level="ERROR")
            except ConnectionError as err:
                raise UserError(f"--address {self.address}: no Ray cluster there ({err}); "
                                f"start one with 'ray start --head' or drop --address") from None

    def run(self, exp: Experiment, groups: list[Group], on_pass: OnPass,
            checkpoints: CheckpointPolicy | None = None
            ) -> Iterator[tuple[Group, list[RunCurve]]]:
        """Every group at once, as Ray tasks. Checkpoints, the time budget and the automatic
        split are the local executor's: `checkpoints` is not used here."""
        ray = self.ray
        gpu = self.device.type == "cuda"
        task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0)(_train_remote)
        exp_json, data_dir = exp.model_dump_json(), str(Path(self.data_dir).resolve())
        pending = {task.remote(exp_json, group, data_dir, self.device.type): group
                   for group in groups}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(done[0])
            # The driver reports the group's passes once it has stored them (sweep.py).
            yield group, ray.get(done[0])


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes; a plain TCP connect fails at once."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise UserError(f"--address {address}: no Ray cluster answers there ({err}); start "
                        f"one with 'ray start --head' or drop --address") from None


def make_executor(name: str, data_dir: Path, device: torch.device, address: str | None):
    if name == "ray":
        return RayExecutor(data_dir, device, address)
    if address is not None:
        raise UserError("--address goes with --executor ray")
    return LocalExecutor(data_dir, device)
