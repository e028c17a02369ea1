"""Where groups train: in this process (default), or as Ray tasks on an existing cluster.

An executor takes the unfinished groups and yields `(group, curves)` as each finishes; the
driver (sweep.py) alone writes results, so resume and the results layout are the same
whichever executor ran the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.runner.group import RunCurve, train_group
from adamrepro.runner.plan import Group

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

    def run(self, exp: Experiment, groups: list[Group], on_pass: OnPass
            ) -> Iterator[tuple[Group, list[RunCurve]]]:
        for group in groups:
            yield group, train_group(exp, group, self.data, lambda e, g=group: on_pass(g, e))


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

    def run(self, exp: Experiment, groups: list[Group], on_pass: OnPass
            ) -> Iterator[tuple[Group, list[RunCurve]]]:
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
