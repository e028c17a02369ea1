"""Subnormal floats flushed to zero while a group trains in one CPU thread
(runner/subnormals.py): no subnormal is made meanwhile, the curves are the same bit for bit,
and the setting, the thread's own, is put back after and left alone with several threads."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from adamrepro.config import load_experiment
from adamrepro.runner.executors import load_data, torch_threads
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import plan
from adamrepro.runner.subnormals import OPT_OUT, flushing

TIMING = {"seconds", "train_seconds", "peak_memory_bytes", "state_bytes"}


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
    """Adam on MNIST at large step sizes, whose softmax grows sure enough within 2 passes of
    2,048 digits to make subnormal probabilities, and so subnormal gradients of the loss."""
    from adamrepro.config import resolve_config_arg

    config = yaml.safe_load(resolve_config_arg("logreg_mnist").read_text())
    config["methods"] = {"adam": {**config["methods"]["adam"], "grid": {"lr": [0.3, 1.0]}}}
    path = tmp_path_factory.mktemp("subnormals") / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    exp = load_experiment(path).at_scale("smoke")
    return exp, plan(exp)[0], load_data(exp, data_dir, torch.device("cpu"))


class SubnormalsMade(TorchDispatchMode):
    """Counts the subnormal float32 values in the outputs of every op torch runs inside,
    the backward's and the optimizer's included (0-dimensional ones left out: `flushing`
    probes with one before it sets anything)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tiny = torch.finfo(torch.float32).tiny
        for value in tree_flatten(out)[0]:
            if (isinstance(value, torch.Tensor) and value.dtype == torch.float32
                    and value.dim() > 0):
                self.count += int(((value != 0) & (value.abs() < tiny)).sum())
        return out


def _trained(setup) -> tuple[list, int]:
    exp, group, data = setup
    with torch_threads(1), SubnormalsMade() as made:
        curves = train_group(exp, group, data)
    return [[{k: v for k, v in row.items() if k not in TIMING} for row in c.rows]
            for c in curves], made.count


def test_flushed_subnormals_change_no_curve(setup, monkeypatch):
    monkeypatch.setenv(OPT_OUT, "0")
    plain, made = _trained(setup)
    assert made > 1_000, made  # else there was nothing to flush, and the test proves nothing
    monkeypatch.delenv(OPT_OUT)
    flushed, made_flushing = _trained(setup)
    assert made_flushing == 0
    assert all(not math.isnan(row["train_loss"]) for c in plain for row in c[1:])
    assert _bitwise(flushed) == _bitwise(plain)


def _bitwise(curves: list) -> list:
    """Every recorded value, a float as its bits (pass 0's NaN loss equals itself)."""
    return [[{k: v.hex() if isinstance(v, float) else v for k, v in row.items()} for row in c]
            for c in curves]


def _flushing_at_each_pass(setup, threads: int) -> list[bool]:
    exp, group, data = setup
    seen: list[bool] = []
    with torch_threads(threads):
        train_group(exp, group, data, on_pass=lambda epoch: seen.append(flushing()))
    return seen


def test_one_thread_flushes_while_its_group_trains_and_puts_the_setting_back(setup):
    assert not flushing()
    assert _flushing_at_each_pass(setup, 1) == [True, True]
    assert not flushing()  # the bench's reference loop, trained next, does not flush


def test_several_threads_do_not_flush(setup):
    """torch's other threads keep the setting they started with: part of every op would
    flush and part not."""
    assert _flushing_at_each_pass(setup, 2) == [False, False]


def test_flushing_is_turned_off_by_its_variable(setup, monkeypatch):
    monkeypatch.setenv(OPT_OUT, "0")
    assert _flushing_at_each_pass(setup, 1) == [False, False]


def test_a_thread_that_flushed_already_is_left_flushing(setup):
    torch.set_flush_denormal(True)
    try:
        assert _flushing_at_each_pass(setup, 1) == [True, True]
        assert flushing()
    finally:
        torch.set_flush_denormal(False)
