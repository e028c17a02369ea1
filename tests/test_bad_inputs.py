"""Every user mistake: exit code 2, one line naming the problem, no traceback, nothing written.

One table drives the test; each row builds the inputs (a config text and CLI flags) in a
fresh folder and names a fragment the one-line message must contain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "logreg_mnist.yaml"
BASE = yaml.safe_load(CONFIG.read_text())


def edit(change):
    """A config text: the bundled logreg_mnist config with `change` applied to its dict."""
    def make() -> str:
        config = json.loads(json.dumps(BASE))
        change(config)
        return yaml.safe_dump(config)
    return make


def setitem(path: str, value):
    def change(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    return edit(change)


def delitem(path: str):
    def change(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]
    return edit(change)


GOOD = edit(lambda config: None)

# id, config text maker, extra flags, fragment of the message
CASES = [
    ("malformed-yaml", lambda: "name: [unclosed\n", [], "not valid YAML at line"),
    ("not-a-mapping", lambda: "- a\n- b\n", [], "must hold a mapping"),
    ("unknown-top-key", setitem("learning_rate", 0.1), [], "learning_rate: Extra inputs"),
    ("unknown-nested-key", setitem("training.bath_size", 64), [], "training.bath_size"),
    ("wrong-type", setitem("training.epochs", "ten"), [], "training.epochs"),
    ("zero-epochs", setitem("training.epochs", 0), [], "training.epochs"),
    # a count of examples: -5 trained on all but 5, `true` on one, 0 divided by zero
    ("negative-train-size", setitem("dataset.train_size", -5), [],
     "dataset.train_size: Input should be greater than 0"),
    ("train-size-true", setitem("dataset.train_size", True), [],
     "dataset.train_size: Input should be a valid integer"),
    ("negative-batch", setitem("training.batch_size", -128), [], "training.batch_size"),
    ("missing-key", delitem("training"), [], "training: Field required"),
    # in our words, not pydantic's ("Dictionary should have at least 1 item", "instance of
    # PlotSpec", "scales.smok.[key]")
    ("no-methods", setitem("methods", {}), [], "methods: give at least one"),
    ("plot-null", setitem("plot", None), [], "plot: Input should be a mapping of keys"),
    # YAML 1.1's yes/no and ~: not the text they look like
    # refused at load, not by plot after the training
    ("vae-samples-of-a-logreg", setitem("plot.figures", ["curves", "vae_samples"]), [],
     "plot.figures: vae_samples draws a VAE's samples, and this experiment trains logreg; "
     "remove it"),
    ("label-yes", edit(lambda c: c["methods"].update({True: c["methods"].pop("adam")})), [],
     "methods.True: YAML read this key as True (an unquoted yes, no, on, off, ~ or null); "
     "quote it"),
    ("variant-no", setitem("methods.adam.variant", False), [],
     "methods.adam.variant: YAML read this as False (an unquoted yes, no, on, off, ~ or "
     "null); quote it"),
    ("quoted-number-in-a-grid", setitem("methods.adam.grid.lr", ["0.1"]), [],
     "methods.adam: lr: '0.1' is text to YAML, not a number (it is quoted); write 0.1"),
    ("scale-name-typo", setitem("scales.smok", {}), [],
     "scales.smok: this key is not one of those allowed: 'smoke', 'quick' or 'paper'"),
    ("empty-grid", setitem("methods.adam.grid", {"lr": []}), [], "grid.lr is empty"),
    # a hyperparameter is a column of the tables: one named like another column would
    # overwrite it in every row (a user's optimizer with a `seed` argument)
    ("hparam-named-like-a-column", setitem("methods.adam.hparams.seed", 7), [],
     "methods.adam.hparams: 'seed' is a column of the results tables"),
    # a user's step that requires a closure the config does not give: refused before training
    ("closure-not-given", setitem("methods.adam", {"optimizer": "my_optimizers:ClosureOnly",
                                                   "grid": {"lr": [0.1]}}), [],
     "methods.adam.optimizer: ClosureOnly.step requires 'closure'"),
    ("grid-key-named-like-a-metric", setitem("methods.adam.grid.test_acc", [1]), [],
     "methods.adam.grid: 'test_acc' is named like the metrics' columns"),
    ("zero-lr", setitem("methods.adam.grid", {"lr": [0.0, 0.1]}), [], "lr must lie in (0"),
    # the value as written, not float32's -0.0010000000474974513
    ("negative-lr", setitem("methods.adagrad.grid", {"lr": [-1e-3]}), [],
     "lr must lie in (0.0, inf), got -0.001"),
    # to float32's 7 digits, not 8: -0.0099999998
    ("negative-lr-of-another-value", setitem("methods.adagrad.grid", {"lr": [-1e-2]}), [],
     "lr must lie in (0.0, inf), got -0.01"),
    ("beta1-is-1", setitem("methods.adam.hparams.betas", [1.0, 0.999]), [], "betas[0]"),
    ("beta2-negative", setitem("methods.adam.hparams.betas", [0.9, -0.1]), [], "betas[1]"),
    ("betas-not-a-pair", setitem("methods.adam.hparams.betas", 0.9), [],
     "betas must be a pair [beta1, beta2], got 0.9"),  # the number, not a tensor's repr
    # a boolean or null in a pair makes no pair of numbers: it goes to the optimizer as
    # written, to be refused there, never made a tensor of 0.0 (β2 = 0: Adam without its
    # second moment's average) or a TypeError traceback
    ("betas-with-a-boolean", setitem("methods.adam.hparams.betas", [0.9, False]), [],
     "methods.adam: adam: betas[1] must be a number, got False"),
    ("betas-with-null", setitem("methods.adam.hparams.betas", [0.9, None]), [],
     "methods.adam: adam: betas[1] must be a number, got None"),
    ("nan-lr", setitem("methods.adam.grid", {"lr": [float("nan")]}), [], "lr must"),
    # a class not ours may take NaN without a word (torch's SGD does): the sweep trained NaN
    # curves and exited 0, every point said diverged
    ("nan-lr-of-a-class-not-ours", setitem("methods.plain_sgd", {
        "optimizer": "torch.optim.SGD", "grid": {"lr": [0.1, float("nan")]}}), [],
     "methods.plain_sgd: lr must be finite, got nan"),
    ("unknown-lr-decay", setitem("methods.adam.hparams.lr_decay", "cosine"), [], "lr_decay"),
    ("unknown-hparam", setitem("methods.sgd_nesterov.hparams.momentm", 0.9), [], "momentm"),
    ("unknown-optimizer", setitem("methods.adam.optimizer", "adamm"), [], "unknown optimizer"),
    ("optimizer-module-missing", setitem("methods.adam.optimizer", "no_such_pkg.opt:Fast"), [],
     "cannot import module 'no_such_pkg.opt' (ModuleNotFoundError: No module named "
     "'no_such_pkg'); install it or put it on PYTHONPATH"),
    # found, but its import fails: installing it again would not help
    ("optimizer-module-raises", setitem("methods.adam.optimizer", "broken_optimizers:Fast"),
     [], "cannot import module 'broken_optimizers' (RuntimeError: a bug in the module); the "
         "error is in that module's code: fix it there"),
    ("optimizer-module-needs-a-package", setitem("methods.adam.optimizer",
                                                 "broken_optimizers:Fast"),
     ["@needs-a-package"], "(ModuleNotFoundError: No module named 'no_such_dependency'); "
                           "install no_such_dependency, which it imports"),
    # built, but refused at the first step: a traceback mid-sweep before
    ("optimizer-refuses-its-first-step", setitem("methods.adam", {
        "optimizer": "torch.optim.SparseAdam", "grid": {"lr": [0.1]}}), [],
     "methods.adam: torch.optim.SparseAdam: RuntimeError: SparseAdam does not support dense "
     "gradients"),
    # a user's subclass that keeps torch's step refuses there too, in torch's code alone:
    # it was a traceback after the first group trained
    ("user-subclass-of-torch-refuses-at-first-step", setitem("methods.adam", {
        "optimizer": "my_optimizers:MySparseAdam", "grid": {"lr": [0.1]}}), [],
     "methods.adam: my_optimizers:MySparseAdam: RuntimeError: SparseAdam does not support "
     "dense gradients"),
    ("optimizer-class-missing", setitem("methods.adam.optimizer", "torch.optim.Adamm"), [],
     "module 'torch.optim' has no attribute 'Adamm'; did you mean 'Adam'?"),
    # the nearest Optimizer class of the module, for a user's misspelt class too
    ("user-optimizer-class-misspelt", setitem("methods.adam.optimizer", "my_optimizers:SignSDG"),
     [], "module 'my_optimizers' has no attribute 'SignSDG'; did you mean 'SignSGD'?"),
    # a step misspelt or forgotten: torch's own raised NotImplementedError in torch's code,
    # a traceback once the first group trained
    ("user-optimizer-without-a-step", setitem("methods.adam", {
        "optimizer": "my_optimizers:MisspeltStep", "grid": {"lr": [0.1]}}), [],
     "methods.adam.optimizer: MisspeltStep defines no step of its own (torch.optim."
     "Optimizer's raises NotImplementedError); define `def step(self, closure=None)`"),
    ("optimizer-not-an-optimizer", setitem("methods.adam.optimizer", "torch.nn.Linear"), [],
     "not a torch.optim.Optimizer subclass"),
    ("import-path-bad-hparam", setitem("methods.adam.optimizer", "torch.optim.SGD"), [],
     "methods.adam: torch.optim.SGD: "),
    ("unknown-selection-metric", setitem("selection.metric", "test_acc2"), [],
     "selection.metric: 'test_acc2' is not a metric of this model"),
    ("unknown-plot-y", setitem("plot.y", "train_recon_error"), [], "plot.y"),
    ("mixed-metrics", setitem("methods.adam.model", {"name": "linear_autoencoder"}), [],
     "every method must train a model with the same metrics"),
    ("zero-group-size", setitem("methods.adam.max_group_size", 0), [], "max_group_size"),
    ("sfo-with-dropout", edit(lambda c: (c["model"].update(input_dropout=0.2),
                                         c["methods"]["adam"].update(optimizer="sfo", grid={},
                                                                     hparams={}))), [],
     "sfo assumes a deterministic objective, but this model draws noise"),
    ("identical-methods", edit(lambda c: c["methods"].update(adam2=c["methods"]["adam"])),
     [], "methods 'adam' and 'adam2' train identical runs"),
    # an implementation option is in no run id: the two shared their runs, and one of them
    # vanished from best.csv with a note that all its points diverged
    ("identical-but-an-implementation-option", edit(lambda c: c["methods"].update(
        adam2={**c["methods"]["adam"], "model": {"sparse_input": True}})), [],
     "methods 'adam' and 'adam2' train identical runs (same optimizer, hyperparameters and "
     "model; a model's implementation options, such as sparse_input, change no curve"),
    ("bad-scale-model", setitem("scales.smoke.model", {"l2": -1}), [], "scales.smoke.model.l2"),
    ("unknown-dataset", setitem("dataset.name", "mnist2"), [], "unknown dataset 'mnist2'"),
    ("unknown-model", setitem("model.name", "resnet"), [], "unknown model 'resnet'"),
    ("bad-model-option", setitem("model.l2", -1.0), [], "yaml: model.l2"),  # not methods.*
    ("unknown-model-option", setitem("model.depth", 3), [], "yaml: model.depth"),
    ("bad-dataset-option", setitem("dataset.layout", "cube"), [], "dataset.layout"),
    # a key the dataset does not take (MNIST's files are always checked: no `verify`), or a
    # misspelt one: what it takes, where "Extra inputs are not permitted" said nothing more
    ("mnist-verify", setitem("dataset.verify", False), [],
     "dataset.verify: Extra inputs are not permitted; it takes: train_size, test_size, "),
    ("dataset-option-misspelt", setitem("dataset.pixel_scal", 255), [],
     "dataset.pixel_scal: Extra inputs are not permitted; did you mean 'pixel_scale'? it "
     "takes: "),
    ("bad-scale-key", setitem("scales.smoke.passes", 1), [], "scales.smoke.passes"),
    ("bad-flag", GOOD, ["--bogus"], "No such option: --bogus"),
    ("bad-scale-flag", GOOD, ["--scale", "huge"], "--scale"),
    ("zero-seeds", GOOD, ["--seeds", "0"], "--seeds"),
    ("time-budget-nan", GOOD, ["--time-budget", "nan", "--dry-run"],
     "Invalid value for '--time-budget': give a number of minutes, 0 or more, not nan"),
    ("time-budget-negative", GOOD, ["--time-budget", "-1", "--dry-run"],
     "Invalid value for '--time-budget': give a number of minutes, 0 or more, not -1.0"),
    ("missing-config", None, [], "does not exist"),
    ("missing-data", GOOD, ["@empty-data"], "missing and could not be downloaded"),
    ("corrupt-data", GOOD, ["@corrupt-data"], "is corrupt (MD5 mismatch"),
    ("unwritable-out", GOOD, ["@out-under-a-file"], "is not a writable folder"),
    # a link to nothing, or to itself: mkdir said "File exists", or raised (a traceback)
    ("out-dangling-link", GOOD, ["@out-dangling-link"],
     "is a symbolic link to nowhere, which does not exist; correct or remove the link"),
    ("out-link-loop", GOOD, ["@out-link-loop"],
     "/loop is a symbolic link to loop, which leads back to itself"),
    # Path("") is the working directory: `--out "$UNSET"` wrote results there without a word
    ("out-empty", GOOD, ["--out", ""],
     "Invalid value for '--out': an empty name; name a folder"),
    ("data-dir-blank", GOOD, ["--data-dir", " "],
     "Invalid value for '--data-dir': an empty name; name a folder"),
    # access() says yes to root in /proc, and mkdir then raised FileNotFoundError
    ("out-under-proc", GOOD, ["--out", "/proc/adamrepro-results"],
     "cannot write results to /proc/adamrepro-results/logreg_mnist: /proc "),
    ("other-config-results", setitem("model.l2", 1e-3), ["@used-out"], "different logreg_mnist"),
    ("beta2-rounds-to-1", setitem("methods.adam.hparams.betas", [0.9, 0.99999999]), [],
     "betas 0.99999999 is 1 in float32, which makes 1 − betas 100% off what was written; "
     "set training.dtype: float64"),
    # float32 keeps it below 1, but with a horizon 1/(1 − β2) 19% shorter than written
    ("beta2-horizon-rounded", edit(lambda c: c["methods"]["adam"].update(
        hparams={k: v for k, v in c["methods"]["adam"]["hparams"].items() if k != "betas"},
        grid={**c["methods"]["adam"]["grid"], "betas": [[0.9, 0.9999999]]})), [],
     "betas 0.9999999 is 0.999999881 in float32, which makes 1 − betas 19% off"),
    ("averaging-horizon-rounded", setitem("methods.adam.hparams.averaging", 0.9999999), [],
     "averaging 0.9999999 is 0.999999881 in float32"),
    # one cell per hyperparameter: a mapping trained, then failed as the tables were written
    ("hparam-mapping", setitem("methods.adam.hparams.schedule", {"warmup": 10}), [],
     "methods.adam: schedule: a mapping nested in a hyperparameter is no value the tables can "
     "hold"),
    # the names it takes and the nearest one: the fix, not only the problem
    ("unknown-hparam", setitem("methods.adam.hparams.beta", 0.9), [],
     "unexpected keyword argument 'beta' (it takes lr, betas, eps, weight_decay, "
     "bias_correction, beta1_decay_rate, lr_decay, averaging, track_step_ratio); did you "
     "mean 'betas'?"),
    # a class not ours: said alike, not as "ValueError: ... (at lr=0.001)", a grid point the
    # name has nothing to do with
    ("unknown-hparam-of-a-class-not-ours", setitem("methods.adam", {
        "optimizer": "torch.optim.Adagrad", "hparams": {"momentum": 0.9},
        "grid": {"lr": [1.0e-3]}}), [],
     "methods.adam: torch.optim.Adagrad: got an unexpected keyword "
     "argument 'momentum' (it takes lr, "),
    ("user-optimizer-init-raises", setitem("methods.adam", {
        "optimizer": "my_optimizers:Faulty", "hparams": {"fails": "init"}}), [],
     "methods.adam: my_optimizers:Faulty: KeyError: 'a bug' (in __init__, "),
    # a class not ours may not name the value it refused: the message names the grid's
    ("user-optimizer-refuses-a-grid-value", setitem("methods.adam", {
        "optimizer": "torch.optim.SGD", "grid": {"lr": [0.1, "fast"]}}), [],
     "methods.adam: torch.optim.SGD: TypeError: '<' not supported between instances of "
     "'str' and 'float' (at lr='fast')"),
    # torch's SGD takes lr=True as a step of 1.0: YAML's `true` where a number belongs
    ("user-optimizer-boolean-lr", setitem("methods.adam", {
        "optimizer": "torch.optim.SGD", "grid": {"lr": [True]}}), [],
     "methods.adam: torch.optim.SGD: lr: True is a boolean, where SGD takes a number (its "
     "default is 0.001); write a number"),
    # and `amsgrad="no"` as AMSGrad on: text or a number where a class not ours takes a switch
    ("user-optimizer-quoted-switch", setitem("methods.adam", {
        "optimizer": "torch.optim.Adam", "hparams": {"amsgrad": "no"},
        "grid": {"lr": [1.0e-3]}}), [],
     "methods.adam: torch.optim.Adam: amsgrad: 'no' is not a boolean, where Adam takes a "
     "switch (its default is False); write true or false (unquoted)"),
    ("user-optimizer-number-switch", setitem("methods.adam", {
        "optimizer": "torch.optim.SGD", "hparams": {"momentum": 0.9},
        "grid": {"lr": [1.0e-3], "nesterov": [0, 1]}}), [],
     "methods.adam: torch.optim.SGD: nesterov: 0 is not a boolean, where SGD takes a switch"),
    ("user-optimizer-optional-switch", setitem("methods.adam", {
        "optimizer": "torch.optim.Adam", "hparams": {"foreach": "yes"},
        "grid": {"lr": [1.0e-3]}}), [],
     "methods.adam: torch.optim.Adam: foreach: 'yes' is not a boolean, where Adam takes a "
     "switch (its default is None)"),
    ("user-optimizer-grid-of-a-pair", setitem("methods.adam", {
        "optimizer": "torch.optim.AdamW", "grid": {"lr": [1.0e-3], "betas": [0.9, 0.99]}}),
     [], "methods.adam: torch.optim.AdamW: betas: 0.9 is not a list, where AdamW takes one "
         "(its default is (0.9, 0.999)); a grid of them is a list of lists, e.g. "
         "[[0.9, 0.999]]"),
    # the other way round: a list where one number belongs reached our optimizers as the
    # batch's tensors, which their message showed
    ("grid-of-a-list-of-numbers", setitem("methods.adam.grid.lr", [[1.0e-3, 1.0e-2]]), [],
     "methods.adam: adam: lr: [0.001, 0.01] is a list, where Adam takes one number (its "
     "default is 0.001); a grid lists its numbers once: lr: [0.001, 0.01], not "
     "[[0.001, 0.01]]"),
    ("hparam-a-list-of-a-number", setitem("methods.adam.hparams.eps", [1.0e-8]), [],
     "methods.adam: adam: eps: [1e-08] is a list, where Adam takes one number (its default "
     "is 1e-08); give one number in hparams, or the values to try in grid"),
    ("grid-not-a-list", setitem("methods.adam.grid.lr", 1.0e-3), [],
     "methods.adam.grid.lr: give a list, even of one value: [0.001]"),
    ("key-typo", edit(lambda c: c["methods"]["adam"].update(
        optimiser=c["methods"]["adam"].pop("optimizer"))), [],
     "methods.adam.optimiser: Extra inputs are not permitted; did you mean 'optimizer'? (and "
     "1 more problem)"),
    # a key of another section: "did you mean 'test_size'?" pointed the wrong way
    ("key-in-another-section", edit(lambda c: c.setdefault("scales", {}).setdefault(
        "smoke", {}).update(batch_size=32)), [],
     "scales.smoke.batch_size: Extra inputs are not permitted; batch_size belongs under "
     "training (here: epochs, log_every, "),
    # the report names methods by label, the paper's claims by optimizer
    ("label-of-another-optimizer", setitem("methods.adam", {
        "optimizer": "torch.optim.Adam", "grid": {"lr": [1.0e-3]}}), [],
     "methods.adam: 'adam' is the name of a built-in optimizer, but this method trains "
     "torch.optim.Adam; give it another label"),
    # the nearest first: two letters swapped is one edit ('adamax' came first)
    ("optimizer-typo", setitem("methods.adam.optimizer", "adma"), [],
     "unknown optimizer 'adma'; did you mean 'adam', "),
    ("name-not-a-folder", setitem("name", "../elsewhere"), [],
     "name: '../elsewhere' is not a folder name"),
    ("missing-title", delitem("title"), [], "title: Field required; add it"),
    ("name-too-long", setitem("name", "x" * 300), [],
     "name: 'xxxxxxxxxxxxxxxxxxxx'... is 300 characters long: give at most 100"),
    ("out-name-too-long", GOOD, ["--out", "/tmp/" + "o" * 300],
     "File name too long; the filesystem takes names of at most 255 bytes: pass a shorter "
     "--out"),
    ("name-of-another-folder", setitem("name", "bench"), [],
     "'bench' is what adamrepro bench writes in a results folder"),
    # a folder so named stood where `report` writes its file, which it then could not
    ("name-of-the-report", setitem("name", "report.md"), [],
     "'report.md' is what adamrepro report writes in a results folder"),
    ("exponent-without-a-dot", setitem("methods.adam.grid.lr", ["1e-3", 1.0e-2]), [],
     "methods.adam: lr: '1e-3' is text to YAML, not a number"),
    ("grid-value-twice", setitem("methods.adam.grid.lr", [1e-3, 1e-2, 1e-3]), [],
     "grid.lr lists 0.001 twice"),
    ("config-is-a-folder", None, ["@config-folder"], "is a folder, not a config file"),
    ("other-scale-results", GOOD, ["@used-out", "--scale", "quick"], "holds smoke-scale results"),
    ("unknown-precision", setitem("training.precision", "fp16"), [],
     "training.precision: Input should be 'fp32', 'tf32' or 'bf16'"),
    ("bf16-with-float64", edit(lambda c: c["training"].update(dtype="float64",
                                                              precision="bf16")), [],
     "training.precision: bf16 is reduced float32 arithmetic and contradicts training.dtype"),
    ("precision-flag-with-float64", setitem("training.dtype", "float64"),
     ["--precision", "tf32"], "--precision: training.precision: tf32 is reduced float32"),
    ("unknown-precision-flag", GOOD, ["--precision", "fp16"], "--precision"),
    # one message for the union auto | bool, not one per member
    ("channels-last-maybe", setitem("training.channels_last", "maybe"), [],
     "training.channels_last: give auto, true or false, not 'maybe'"),
    ("sparse-input-maybe", setitem("model.sparse_input", "maybe"), [],
     "model.sparse_input: give auto, true or false, not 'maybe'"),
    # a scale's grid key that is in no method's grid would replace nothing: the whole grid
    ("scale-grid-key-in-no-grid", setitem("scales.smoke.grid", {"lrr": [1.0]}), [],
     "scales.smoke.grid: 'lrr' is in no method's grid (the grids have lr)"),
    # YAML's true and "128" are not counts (pydantic's lax mode took them for 1 and 128)
    ("epochs-true", setitem("training.epochs", True), [],
     "training.epochs: Input should be a valid integer"),
    ("batch-size-text", setitem("training.batch_size", "128"), [],
     "training.batch_size: Input should be a valid integer"),
    # not clipped to the data: config.json would record a size that never trained
    # known without the data: refused at load, so a dry run says it too (it was found only
    # once the data was read)
    ("train-size-beyond-the-data", setitem("scales.smoke.train_size", 10_000_000), [],
     "dataset.train_size 10000000 at scale smoke (the dataset's, or that scale's under "
     "scales:) is more than the 60,000 examples of mnist's train split; give at most 60000"),
    ("test-size-beyond-the-data-in-a-dry-run", setitem("dataset.test_size", 10_001),
     ["--dry-run"], "dataset.test_size 10001 at scale quick (the dataset's, or that scale's "
     "under scales:) is more than the 10,000 examples of mnist's test split"),
    # refused before training, not after it with the other tables already replaced
    ("a-folder-where-a-table-goes", GOOD, ["@folder-for-a-table"],
     "curves.csv is a folder where a table goes; move it away"),
    # pydantic's lax mode took these for numbers and switches without a word
    ("exponent-in-an-option", setitem("model.l2", "1e-4"), [],
     "model.l2: '1e-4' is text to YAML, not a number (YAML 1.1 reads an exponent as a number "
     "only after a dot and with a sign, as 1.0e-3); write 0.0001"),
    # a dot is not enough (the message said "without a dot" of this too), nor an overflow
    ("exponent-without-a-sign", setitem("methods.adam.grid.lr", ["1.0e2"]), [],
     "methods.adam: lr: '1.0e2' is text to YAML, not a number (YAML 1.1 reads an exponent as "
     "a number only after a dot and with a sign, as 1.0e-3); write 100.0"),
    ("exponent-beyond-floats", setitem("methods.adam.grid.lr", ["1.0e400"]), [],
     "methods.adam: lr: '1.0e400' is text to YAML, not a number (YAML 1.1 reads an exponent "
     "as a number only after a dot and with a sign, as 1.0e-3); write a finite number"),
    # YAML 1.1's base 60: `epochs: 1:30` trained 90 passes without a word
    ("base-60-number", lambda: CONFIG.read_text().replace(
        "epochs: 45}", "epochs: 1:30}", 1), [],
     "is a base-60 number to YAML 1.1 (90); write 90, or quote it for text"),
    # `plot` read an empty list as its defaults
    ("no-figures", setitem("plot.figures", []), [],
     "plot.figures is empty; name the figures to draw (known: "),
    # a value of a scale's grid is refused naming the scale, not the method's own grid
    ("scale-grid-value-refused", setitem("scales.smoke.grid", {"lr": [-1.0]}), ["--dry-run"],
     "at scale smoke (scales.smoke.grid): adagrad: lr must lie in (0.0, inf), got -1"),
    # a number where a name goes is shown as written, not as the group's tensor
    ("lr-decay-a-number", setitem("methods.adam.hparams.lr_decay", 1), ["--dry-run"],
     "lr_decay must be one of none, sqrt, got 1"),
    ("l2-true", setitem("model.l2", True), [], "model.l2: Input should be a valid number"),
    ("init-scale-text", setitem("model.init_scale", "0.01"), [],
     "model.init_scale: Input should be a valid number"),
    ("drop-last-yes", setitem("training.drop_last", "yes"), [],
     "training.drop_last: Input should be a valid boolean"),
    ("logy-one", setitem("plot.logy", 1), [], "plot.logy: Input should be a valid boolean"),
    ("closure-yes", setitem("methods.adam.closure", "yes"), [],
     "methods.adam.closure: Input should be a valid boolean"),
    ("l2-infinite", setitem("model.l2", float("inf")), [],
     "model.l2: Input should be a finite number"),
    ("max-epoch-negative", setitem("plot.max_epoch", -1), [],
     "plot.max_epoch: Input should be greater than 0"),
    ("seeds-beyond-the-limit", GOOD, ["--seeds", "10000000000", "--dry-run"],
     "Invalid value for '--seeds'"),  # its own bound: runs of one grid point would not reach it
    ("seeds-in-config-beyond-the-limit", setitem("seeds", 10**10), [],
     "seeds: Input should be less than or equal to"),
    ("scale-seeds-beyond-the-limit", setitem("scales.smoke.seeds", 50_000), [],
     "scales.smoke.seeds: Input should be less than or equal to 10000"),
    # counted, not built: the plan of every run would fill the host's memory first
    ("too-many-runs", GOOD, ["--seeds", "9999", "--dry-run"],
     "runs, more than one sweep trains"),
    ("hparam-also-in-the-grid", setitem("methods.adam.hparams.lr", 0.1), [],
     "methods.adam: 'lr' is in both hparams and grid"),
    ("empty-method-label", edit(lambda c: c["methods"].update({"": c["methods"]["adam"]})),
     [], "methods: '' is not a method label"),
    ("method-label-ends-in-a-space", edit(lambda c: c["methods"].update(
        {"adam ": c["methods"].pop("adam")})), [], "methods: 'adam ' is not a method label"),
    ("batch-beyond-the-examples", setitem("scales.smoke.train_size", 100), [],
     "training.batch_size 128 is more than the 100 training examples at scale smoke"),
    # its results would nest as logreg_mnist/logreg_mnist, where plot and report find none
    ("out-is-an-experiment-folder", GOOD, ["@experiment-folder"],
     "logreg_mnist is an experiment's own folder (it holds config.json); pass the results "
     "folder above it: --out "),
    # one process: where forks cannot run autograd (torch 2.14.1 once torch.compile has run
    # in this one), a note on the workers would come first
    ("fake-memory-limit-text", GOOD, ["@fake-memory-limit-text", "--workers", "1"],
     "$ADAMREPRO_FAKE_MEMORY_LIMIT_RUNS is 'abc': give a whole number of runs"),
    ("address-without-ray", GOOD, ["--address", "ray://x:10001", "--dry-run"],
     "--address goes with --executor ray"),
    # torch's generators take 64 bits, and a run's streams are seed·1,000,003 + stream: a
    # larger seed failed mid-sweep in a worker, with a traceback
    ("seed-beyond-the-limit", setitem("seed", 2**63 - 1), [],
     "seed: Input should be less than 4294967296"),
    # the first seed a seed, the last not: seed 2^32 - 1 with 2 seeds trained a seed 2^32
    ("last-seed-beyond-the-limit", edit(lambda c: c.update(seed=2**32 - 1, seeds=2)), [],
     "seed 4294967295 with 2 seeds at scale smoke runs seeds up to 4,294,967,296, beyond the "
     "largest, 2^32 - 1 = 4,294,967,295; give a seed of at most 4,294,967,294"),
    ("last-seed-beyond-the-limit-by-flag", setitem("seed", 2**32 - 3), ["--seeds", "4"],
     "seed 4294967293 with 4 seeds at scale smoke runs seeds up to 4,294,967,296"),
    ("seed-negative", setitem("seed", -1), [], "seed: Input should be greater than or equal to 0"),
    # more fixed minibatches than examples: 100,000 subfunctions took the host's memory
    ("subfunctions-beyond-the-examples", edit(lambda c: c["methods"].update(
        sfo={"optimizer": "sfo", "grid": {"num_subfunctions": [8, 100_000]}})), [],
     "methods.sfo: sfo: num_subfunctions 100000 is more than the 2,048 training examples at "
     "scale smoke (dataset.train_size); give at most 2048"),
    # the official training set's size is known without the data: refused at load
    ("subfunctions-beyond-the-full-set", edit(lambda c: (
        c["methods"].clear(), c["scales"]["smoke"].pop("train_size"),
        c["methods"].update(sfo={"optimizer": "sfo", "grid": {"num_subfunctions": [70_000]}}))),
     ["--dry-run"], "methods.sfo: sfo: num_subfunctions 70000 is more than the 60,000 training "
     "examples at scale smoke (the whole training set); give at most 60000"),
]
if not torch.cuda.is_available():
    CASES.append(("no-cuda", GOOD, ["--device", "cuda"], "no CUDA device"))


def snapshot(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


@pytest.fixture(scope="module")
def used_out(tmp_path_factory, data_dir):
    """A results folder already holding the bundled config's smoke results."""
    from adamrepro.cli import main

    out = tmp_path_factory.mktemp("used")
    assert main(["run", str(CONFIG), "--scale", "smoke", "--out", str(out), "--quiet",
                 "--data-dir", str(data_dir)]) == 0
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path, cli, data_dir, used_out, monkeypatch):
    name, make_config, flags, fragment = case
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "outside"))  # my_optimizers
    config = tmp_path / "logreg_mnist.yaml"
    if make_config is not None:
        config.write_text(make_config())
    out, data = tmp_path / "out", data_dir
    extra = []
    for flag in flags:
        if flag == "@empty-data":
            data = tmp_path / "no-data"
            monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", "http://127.0.0.1:9/")  # offline
        elif flag == "@corrupt-data":
            data = tmp_path / "corrupt"
            shutil.copytree(data_dir / "MNIST", data / "MNIST")
            (data / "MNIST/raw/train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
        elif flag == "@out-under-a-file":
            (tmp_path / "a-file").write_text("")
            out = tmp_path / "a-file" / "results"
        elif flag == "@used-out":
            out = used_out
        elif flag == "@out-dangling-link":
            out = tmp_path / "dangling"
            out.symlink_to("nowhere")
        elif flag == "@out-link-loop":
            (tmp_path / "loop").symlink_to("loop")
            out = tmp_path / "loop" / "results"
        elif flag == "@fake-memory-limit-text":
            monkeypatch.setenv("ADAMREPRO_FAKE_MEMORY_LIMIT_RUNS", "abc")
        elif flag == "@needs-a-package":
            monkeypatch.setenv("BROKEN_OPTIMIZERS", "needs-a-package")
        elif flag == "@experiment-folder":  # --out results/logreg_mnist
            out = used_out / "logreg_mnist"
        elif flag == "@config-folder":
            config.mkdir()
        elif flag == "@folder-for-a-table":
            (out / "logreg_mnist" / "curves.csv").mkdir(parents=True)
        else:
            extra.append(flag)
    before = snapshot(out), snapshot(data if data != data_dir else tmp_path / "none")

    code, stdout, stderr = cli("run", config, "--scale", "smoke", "--out", out, "--quiet",
                               "--data-dir", data, *extra)

    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("adamrepro: error: ") and "Traceback" not in stderr
    assert fragment in lines[0], lines[0]
    if name == "unknown-hparam":  # not a value that float32 rounding changed
        assert "rounded" not in lines[0], lines[0]
    if name.startswith("negative-lr"):  # no float32 digits after it
        assert lines[0].endswith(fragment.rsplit(" ", 1)[1]), lines[0]
    assert stdout == ""
    after = snapshot(out), snapshot(data if data != data_dir else tmp_path / "none")
    assert after == before, "a failed command wrote files"


def test_cifar10_checksums_are_skipped_only_by_a_yaml_false(tmp_path):
    """`verify: "no"` is text, not false: lax pydantic read it as false, and the checksums
    were skipped while the results said the data was verified."""
    from adamrepro.config import CONFIG_DIR, load_experiment
    from adamrepro.errors import UserError
    from adamrepro.runner.sweep import data_verified

    config = yaml.safe_load((CONFIG_DIR / "cnn_cifar10.yaml").read_text())
    path = tmp_path / "cnn.yaml"
    for verify, verified in (("no", None), (0, None), (False, False), (True, True)):
        path.write_text(yaml.safe_dump({**config, "dataset": {**config["dataset"],
                                                              "verify": verify}}))
        if verified is None:
            with pytest.raises(UserError, match="dataset.verify: Input should be a valid bool"):
                load_experiment(path)
        else:
            assert data_verified(load_experiment(path)) is verified


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_or_report_of_an_experiment_folder_names_the_one_above(command, cli, used_out):
    before = snapshot(used_out)
    code, _, stderr = cli(command, "--out", used_out / "logreg_mnist")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr.endswith(f"pass the results folder above it: --out {used_out}\n"), stderr
    assert snapshot(used_out) == before


def test_a_config_path_without_its_suffix_is_that_file(cli, tmp_path, monkeypatch):
    """`run configs/logreg_mnist` is the file configs/logreg_mnist.yaml, not a bundled
    name (it said ".../configs/configs/logreg_mnist.yaml does not exist")."""
    (tmp_path / "configs").mkdir()
    shutil.copy(CONFIG, tmp_path / "configs" / "mine.yaml")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", "configs/mine", "--scale", "smoke", "--dry-run",
                         "--out", tmp_path / "out")
    assert code == 0 and out.startswith("logreg_mnist at smoke scale"), err
    code, _, err = cli("run", "configs/mnie", "--dry-run")
    assert code == 2 and "config file configs/mnie.yaml does not exist" in err, err


def test_a_bundled_name_is_the_bundled_config_beside_a_folder_of_that_name(cli, tmp_path,
                                                                         monkeypatch):
    """`run logreg_mnist --out .` leaves a folder `logreg_mnist` in the working directory;
    the same command again said "config file logreg_mnist is a folder, not a config file"."""
    (tmp_path / "logreg_mnist").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", "logreg_mnist", "--scale", "smoke", "--dry-run", "--out", ".")
    assert code == 0 and out.startswith("logreg_mnist at smoke scale"), err


def test_plot_without_results(cli, tmp_path):
    code, _, stderr = cli("plot", "--out", tmp_path)
    assert code == 2 and stderr.count("\n") == 1 and "no results under" in stderr


@pytest.mark.parametrize("folder", ["bench", "compare"])
def test_plot_of_another_command_s_folder_says_what_it_is(folder, cli, tmp_path):
    """`plot bench` said to run 'adamrepro run' on the config of bench, which no experiment
    may be named."""
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "logreg_mnist-cpu-smoke.json").write_text("{}")
    code, stdout, stderr = cli("plot", folder, "--out", tmp_path)
    assert code == 2 and stdout == "" and stderr.count("\n") == 1, stderr
    assert (f"{tmp_path / folder} holds what 'adamrepro {folder}' wrote, not an experiment's "
            f"results: plot draws experiments") in stderr


def test_plot_checks_every_name_before_it_draws_any(cli, tmp_path, used_out):
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    before = snapshot(out)
    code, _, stderr = cli("plot", "logreg_mnist", "logreg_mnist_x", "--out", out)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"no results of 'logreg_mnist_x' under {out} (it has logreg_mnist)" in stderr
    assert snapshot(out) == before


@pytest.mark.parametrize("table", ["config.json", "curves.csv"])
@pytest.mark.parametrize("command", ["report", "plot"])
def test_a_folder_without_one_of_its_tables_is_named_not_skipped(command, table, cli, tmp_path,
                                                                 used_out):
    """The report and plot find an experiment by any of its tables: one whose config.json
    or curves.csv is gone is named, not left out of the report as 'not run yet' (nor 'no
    results': plot looked for curves.csv alone, and said so of a folder without one)."""
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    (out / "logreg_mnist" / table).unlink()
    before = snapshot(out)
    code, _, stderr = cli(command, "--out", out)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"{out / 'logreg_mnist' / table} is missing" in stderr
    assert snapshot(out) == before


def test_a_damaged_owner_file_is_one_line_and_force_goes_on(cli, tmp_path, data_dir):
    """A folder's `.sweep-owner.json` (a sweep cut off before its tables, which left a
    checkpoint) that is not what this package writes: one line naming it, not an
    AttributeError, nor "a different config"; --force, as the line says, trains. With
    nothing trained in the folder there is nothing to protect: the file is replaced."""
    folder = tmp_path / "out" / "logreg_mnist"
    (folder / "runs").mkdir(parents=True)
    args = ("run", CONFIG, "--scale", "smoke", "--out", tmp_path / "out", "--quiet",
            "--data-dir", data_dir)
    (folder / ".sweep-owner.json").write_text("[]")
    code, _, stderr = cli(*args, "--dry-run")
    assert code == 0, stderr
    (folder / "runs" / "0123456789ab.ckpt.pt").write_bytes(b"a group's checkpoint")
    for damage in ("[]", "{\"base_dig"):
        (folder / ".sweep-owner.json").write_text(damage)
        code, _, stderr = cli(*args)
        assert code == 2 and stderr.count("\n") == 1, stderr
        assert f"{folder / '.sweep-owner.json'} is damaged (" in stderr
        assert "--force" in stderr and "different" not in stderr
        # no tables here to write again: the sweep that wrote it never finished
        assert "tables" not in stderr and "this command's config and scale" in stderr, stderr
    code, stdout, stderr = cli(*args, "--force")
    assert code == 0 and (folder / "curves.csv").exists(), stderr


def test_only_selected_trains_every_seed_of_the_selecting_sweep(cli, tmp_path, data_dir):
    """`--only-selected A` without --seeds trains A's seeds, as its help says ("every seed"),
    not the config's one: each selected run of A has its twin in B."""
    base = ("run", CONFIG, "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    assert cli(*base, "--seeds", "2", "--out", tmp_path / "a")[0] == 0
    code, _, err = cli(*base, "--only-selected", tmp_path / "a", "--out", tmp_path / "b")
    assert code == 0, err
    curves = pd.read_csv(tmp_path / "b" / "logreg_mnist" / "curves.csv")
    assert sorted(curves["seed"].unique()) == [0, 1]
    selected = pd.read_csv(tmp_path / "a" / "logreg_mnist" / "best.csv")["run_ids"]
    assert {r for ids in selected for r in ids.split(";")} == set(curves["run_id"])
    # unless --seeds says otherwise; fewer than A's leave some of A's runs without a twin,
    # which `compare A C` would refuse only after the training: said before it
    code, _, err = cli(*base, "--only-selected", tmp_path / "a", "--seeds", "1",
                       "--out", tmp_path / "c")
    assert code == 0, err
    assert err.startswith(f"adamrepro: note: --seeds 1: {tmp_path / 'a'} holds 2 seeds of "
                          f"each selected point"), err
    assert set(pd.read_csv(tmp_path / "c" / "logreg_mnist" / "curves.csv")["seed"]) == {0}
    # B's report judges one point a method: every verdict says so, where A's do not
    for folder in ("a", "b"):
        assert cli("report", "--out", tmp_path / folder)[0] == 0
    rows = {folder: [line for line in (tmp_path / folder / "report.md").read_text().splitlines()
                     if line.startswith("| fig1-left-")] for folder in ("a", "b")}
    caution = f"caution: trained only the points selected in {tmp_path / 'a'}"
    assert rows["b"] and all(caution in row for row in rows["b"]
                             if "| holds |" in row or "| does not hold |" in row), rows["b"]
    assert any("| holds |" in row or "| does not hold |" in row for row in rows["b"])
    assert not any(caution in row for row in rows["a"]), rows["a"]


def test_another_scale_is_named_before_fewer_seeds(cli, tmp_path, data_dir):
    """A folder of 2 seeds at smoke scale, and a quick-scale command of 1 seed: the scale is
    the mistake (its fix another --out), not the seeds (whose fix, --seeds 2, would then be
    refused for the scale)."""
    out = tmp_path / "out"
    base = ("run", CONFIG, "--out", out, "--quiet", "--data-dir", data_dir)
    assert cli(*base, "--scale", "smoke", "--seeds", "2")[0] == 0
    code, _, stderr = cli(*base, "--scale", "quick", "--dry-run")
    assert code == 2 and "holds smoke-scale results" in stderr and "--seeds" not in stderr
    code, _, stderr = cli(*base, "--scale", "smoke", "--dry-run")
    assert code == 2 and "pass --seeds 2" in stderr


def test_bench_refuses_an_out_it_cannot_write_before_it_times(cli, tmp_path):
    """Before minutes of timing, not after them: nothing of the bench is done."""
    (tmp_path / "a-file").write_text("")
    code, stdout, stderr = cli("bench", "logreg_mnist", "--scale", "smoke", "--quiet",
                               "--out", tmp_path / "a-file")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"--out {tmp_path / 'a-file'} is a file, not a folder" in stderr and stdout == ""


def test_a_config_or_data_folder_of_the_wrong_kind_is_named(cli, tmp_path):
    code, _, stderr = cli("run", "/dev/null", "--dry-run", "--out", tmp_path / "out")
    assert code == 2 and "config file /dev/null is not a regular file" in stderr, stderr
    (tmp_path / "a-file").write_text("")
    code, _, stderr = cli("fetch", "mnist", "--data-dir", tmp_path / "a-file")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"data folder {tmp_path / 'a-file'} is a file" in stderr
    assert (tmp_path / "a-file").read_text() == "" and not (tmp_path / "out").exists()
    # plot and report said "no results under it" of a file, as of an empty folder
    for command in (("plot",), ("report",), ("run", CONFIG, "--scale", "smoke", "--dry-run")):
        code, _, stderr = cli(*command, "--out", tmp_path / "a-file")
        assert code == 2 and stderr.count("\n") == 1, stderr
        assert f"--out {tmp_path / 'a-file'} is a file, not a folder; pass a folder" in stderr
    # a dry run planned on a data folder that was a file, which the run then refused
    code, stdout, stderr = cli("run", CONFIG, "--scale", "smoke", "--dry-run", "--data-dir",
                               tmp_path / "a-file", "--out", tmp_path / "out")
    assert code == 2 and stdout == "" and f"data folder {tmp_path / 'a-file'} is a file" \
        in stderr, stderr
    assert (tmp_path / "a-file").read_text() == ""


NO_USER = "no_such_user_adamrepro"


@pytest.mark.parametrize("value, said", [
    (f"~{NO_USER}/data", f"$ADAMREPRO_DATA is '~{NO_USER}/data': no user '{NO_USER}'"),
    # read as the folder " ": "put the official files in  /MNIST/raw" read as the root's
    (" ", "$ADAMREPRO_DATA is blank; unset it, or set it to the data folder"),
])
def test_a_data_folder_variable_that_names_no_folder_is_one_line(value, said, cli,
                                                                   monkeypatch, tmp_path):
    monkeypatch.setenv("ADAMREPRO_DATA", value)
    code, stdout, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path / "out")
    assert code == 2 and stdout == "" and stderr.startswith(f"adamrepro: error: {said}"), stderr
    assert stderr.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, said", [
    # the config.json of a results folder (JSON is YAML): "Extra inputs are not permitted"
    (("run", "@record", "--dry-run"),
     "@record is the record of a results folder, not a config; run the config it was made "
     "from (logreg_mnist, with --scale smoke and --out @used)"),
    (("run", "", "--dry-run"), "no config given (an empty name); give a config file or a "
                               "bundled config: "),  # it said "config file . is a folder"
    (("fetch", "configs/nothere.yaml"), "config file configs/nothere.yaml does not exist"),
    # said as --out says it (it said results/logreg_mnist/logreg_mnist/best.csv is missing)
    (("run", CONFIG, "--scale", "smoke", "--only-selected", "@used/logreg_mnist", "--dry-run"),
     "--only-selected @used/logreg_mnist is an experiment's own folder (it holds "
     "config.json); pass the results folder above it: --only-selected @used"),
    # Python's "invalid literal for int() with base 10: 'notahost'"
    (("run", CONFIG, "--scale", "smoke", "--executor", "ray", "--address", "notahost",
      "--out", "@tmp/out"),
     "--address notahost: give HOST:PORT (a port from 1 to 65535)"),
    (("report", "@used"), "Got unexpected extra argument(s) (@used) (report takes the "
                          "results folder as --out FOLDER)"),
    (("compare", "@used", "@tmp/other", "--metric", "test_accc", "--out", "@tmp/compared"),
     "has no column 'test_accc'; choose --metric among the metric columns of its model: "
     "train_loss, train_loss_full, test_loss, test_acc"),
    # a column that is no metric gave a verdict ("within the seed spread ... bit for bit")
    (("compare", "@used", "@tmp/other", "--metric", "seed", "--out", "@tmp/compared"),
     "curves.csv: 'seed' is no metric of its model; choose --metric among the metric "
     "columns of its model: train_loss, train_loss_full, test_loss, test_acc"),
    (("compare", "@used", "@tmp/other", "--metric", "", "--out", "@tmp/compared"),
     "has no column ''; choose --metric"),
    # an unset "$RAY_ADDRESS": a traceback from ray.init, after the data had loaded
    (("run", CONFIG, "--scale", "smoke", "--executor", "ray", "--address", "",
      "--out", "@tmp/out"), "--address: an empty address; give HOST:PORT, or drop --address"),
    (("bench", "logreg_mnist", "--scale", "smoke", "--threads", "100000", "--out",
      "@tmp/out"), "--threads 100000 is more than 4 per core of the"),
    # a `~user` no system knows, which the shell leaves as typed: pathlib's RuntimeError
    (("run", CONFIG, "--scale", "smoke", "--dry-run", "--out", f"~{NO_USER}/results"),
     f"Invalid value for '--out': '~{NO_USER}/results': no user '{NO_USER}' whose home "
     f"~{NO_USER} could stand for; write the full path, or ~/{NO_USER} for a folder in your "
     f"own home"),
    (("fetch", "mnist", "--data-dir", f"~{NO_USER}"), f"no user '{NO_USER}'"),
    # bench/ and compare's table were written inside an experiment's folder
    (("bench", "logreg_mnist", "--scale", "smoke", "--out", "@used/logreg_mnist"),
     "--out @used/logreg_mnist is an experiment's own folder (it holds config.json); pass "
     "the results folder above it: --out @used"),
    (("compare", "@used", "@tmp/other", "--out", "@used/logreg_mnist"),
     "--out @used/logreg_mnist is an experiment's own folder (it holds config.json); pass "
     "another folder, or none for @tmp/other/compare"),
    # "" and ".." named the results folder itself: "run ... on the config of used"
    (("plot", "", "--out", "@used"), "'' is no experiment's name; name one under @used "
                                     "(logreg_mnist), or none for every one"),
    (("plot", "..", "--out", "@used"), "'..' is no experiment's name"),
    # inside an experiment's folder (its runs/): a copy or removal of that folder carried
    # another sweep's results with it
    (("run", CONFIG, "--scale", "smoke", "--dry-run", "--out", "@used/logreg_mnist/runs"),
     "--out @used/logreg_mnist/runs is inside the experiment folder @used/logreg_mnist; pass a "
     "results folder outside it, such as --out @used"),
    (("report", "--out", "@used/logreg_mnist/runs/x"),
     "--out @used/logreg_mnist/runs/x is inside the experiment folder @used/logreg_mnist"),
    # a bundled config's name in capitals, misspelt, or with .yaml where no such file is
    (("run", "LOGREG_MNIST", "--dry-run"), "LOGREG_MNIST.yaml does not exist; did you mean "
                                           "the bundled config 'logreg_mnist'? (bundled "
                                           "configs: cnn_cifar10, extensions"),
    (("run", "@tmp/logreg_mnst.yaml", "--dry-run"), "did you mean the bundled config "
                                                    "'logreg_mnist'?"),
    (("run", "@tmp/nothing_like_it.yaml", "--dry-run"), "nothing_like_it.yaml does not exist; "
                                                        "bundled configs: cnn_cifar10"),
], ids=["results-record", "empty-config", "missing-config-file", "only-selected-own-folder",
        "ray-address-no-port", "report-positional", "compare-unknown-metric",
        "compare-not-a-metric", "compare-empty-metric", "ray-address-empty", "bench-threads",
        "out-unknown-user", "data-dir-unknown-user", "bench-out-own-folder",
        "compare-out-own-folder", "plot-empty-name", "plot-parent-name", "run-out-in-runs",
        "report-out-in-runs", "config-capitals",
        "config-misspelt", "config-unlike-any"])
def test_a_mistake_is_one_line_with_its_fix(command, said, cli, used_out, tmp_path):
    """Mistakes an audit found worded without their fix, or in Python's words."""
    places = {"@record": str(used_out / "logreg_mnist" / "config.json"),
              "@used": str(used_out), "@tmp": str(tmp_path)}

    def placed(text: str) -> str:
        for mark, place in places.items():
            text = text.replace(mark, place)
        return text

    shutil.copytree(used_out, tmp_path / "other")
    before = snapshot(used_out), snapshot(tmp_path)
    code, stdout, stderr = cli(*(placed(str(part)) for part in command))
    assert code == 2 and stderr.count("\n") == 1 and stdout == "", stderr
    assert placed(said) in stderr, stderr
    assert (snapshot(used_out), snapshot(tmp_path)) == before


def test_bench_refuses_a_link_loop_before_it_times_anything(cli, tmp_path):
    """An --out under a symbolic link to itself passed bench's check (Path.exists() says
    False, so the check went up to the link's folder) and was found only when the timings,
    minutes at paper scale, were written: a traceback, the measurement lost."""
    (tmp_path / "loop").symlink_to("loop")
    code, stdout, stderr = cli("bench", "logreg_mnist", "--scale", "smoke", "--device", "cpu",
                               "--quiet", "--out", tmp_path / "loop" / "results")
    assert code == 2 and stdout == "" and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"adamrepro: error: cannot write results to {tmp_path}/loop/"
                             f"results/bench: {tmp_path}/loop is a symbolic link to loop, "
                             f"which leads back to itself"), stderr


def test_a_bench_the_disk_refuses_leaves_no_folder_or_half_a_pair(cli, tmp_path, monkeypatch):
    """A full disk as bench writes its timings: one line naming the file, and neither the
    json written without its csv nor the bench/ folder it made left behind (run removes
    what it made; bench left an empty bench/)."""
    import errno

    fsync = os.fsync

    def full_on_csv(fd):  # the other file of the pair may be complete by then
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "/bench/." in name and ".csv." in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_on_csv)
    out = tmp_path / "results"
    code, stdout, stderr = cli("bench", "logreg_mnist", "--scale", "smoke", "--device", "cpu",
                               "--quiet", "--passes", "1", "--reference-runs", "1",
                               "--out", out)
    # a busy machine adds a note on the timings' noise before it
    said = [line for line in stderr.splitlines() if not line.startswith("adamrepro: note: ")]
    assert code == 2 and len(said) == 1, stderr
    assert said[0].startswith(f"adamrepro: error: {out}/bench/logreg_mnist-cpu-smoke.") and \
        "No space left on device; free some space" in said[0], stderr
    assert not out.exists(), list(out.rglob("*"))


def test_an_unknown_choice_is_said_without_a_validators_words(cli):
    """typer's check of a flag's choices said "Value error, 'hugh' is not one of ...", as a
    pydantic validator words it."""
    for args, flag in ((("list", "foo"), "'what'"),
                       (("run", "logreg_mnist", "--scale", "hugh", "--dry-run"), "'--scale'")):
        code, stdout, stderr = cli(*args)
        assert code == 2 and stdout == "" and stderr.count("\n") == 1, stderr
        assert stderr.startswith(f"adamrepro: error: Invalid value for {flag}: '"), stderr
        assert "Value error" not in stderr and "is not one of" in stderr


def test_unknown_command(cli):
    code, _, stderr = cli("rn")
    assert code == 2 and stderr.count("\n") == 1 and "No such command" in stderr


@pytest.mark.parametrize("command, blocked, flags", [
    (("plot", "logreg_mnist"), "logreg_mnist/curves.png",
     "--out (results) or --data-dir (data; or $ADAMREPRO_DATA)"),
    (("report",), "report.md", "--out"),  # report has no --data-dir to offer
])
def test_a_figure_or_report_it_cannot_write_is_one_line(command, blocked, flags, cli, tmp_path,
                                                         used_out):
    """The filesystem refuses (here a folder where the file goes; a read-only or full disk
    alike): one line naming the file and the fix, exit 2, and no temporary file left."""
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    (out / blocked).mkdir()
    before = snapshot(out)
    code, _, stderr = cli(*command, "--out", out)
    assert code == 2, stderr
    [line] = [line for line in stderr.splitlines() if not line.startswith("wrote ")]
    assert line == (f"adamrepro: error: {out / blocked}: Is a directory; a folder stands "
                    f"where a file goes, or a file where a folder goes: move it away, or pass "
                    f"another {flags}"), line
    assert not [p for p in out.rglob(".*.tmp*")], "a temporary file was left"
    assert {p for p in snapshot(out) if p not in before} <= {
        str(p) for p in out.rglob("*.p*")}  # at most the figures drawn before it


def test_a_full_disk_names_the_file_not_our_temporary_one(tmp_path):
    """A write that the disk refuses says no file (the OSError of f.write has none), and
    mkstemp's names our temporary file: the line named neither the file nor its folder."""
    import errno

    from adamrepro.atomic import atomic_file
    from adamrepro.cli import FOLDER_FLAGS, filesystem_problem

    path = tmp_path / "report.md"
    with pytest.raises(OSError) as raised, atomic_file(path) as f:
        f.write("half of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as the next write would
    assert raised.value.filename == str(path) and list(tmp_path.iterdir()) == []
    assert filesystem_problem(raised.value, FOLDER_FLAGS["report"]) == (
        f"{path}: No space left on device; free some space, or pass --out on another disk, "
        f"and run the same command again (each file is replaced whole: nothing half-written "
        f"stays)")
    # no permission makes a read-only disk writable; fetch has --data-dir alone
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    assert filesystem_problem(read_only, FOLDER_FLAGS["fetch"]) == (
        f"{path}: Read-only file system; the disk is mounted read-only: pass another "
        f"--data-dir (or $ADAMREPRO_DATA)")


def test_a_kill_between_the_renames_of_a_set_is_told_not_read(tmp_path, used_out,
                                                                monkeypatch):
    """A set is renamed into place file by file, config.json last. A kill in between leaves
    new tables beside an old config.json: the readers refuse the mix in one line (before,
    they drew and judged it as one experiment's: a best.csv of 2 seeds beside curves of 1)."""
    from adamrepro.errors import UserError
    from adamrepro.results.store import ResultStore
    from adamrepro.results.tables import read_results, read_table

    shutil.copytree(used_out, tmp_path / "out")
    store = ResultStore(tmp_path / "out", "logreg_mnist")
    curves, best, meta = read_results(store.root)
    before = (store.root / "config.json").read_text()
    renamed = []

    def killed_after_the_first(source, destination):
        if renamed:
            raise KeyboardInterrupt
        renamed.append(destination)
        os.rename(source, destination)

    monkeypatch.setattr(os, "replace", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        store.write_tables({"curves.csv": curves.assign(seconds=2 * curves["seconds"]),
                            "best.csv": best}, meta)
    monkeypatch.undo()
    assert [Path(p).name for p in renamed] == ["curves.csv"]
    assert (store.root / "config.json").read_text() == before  # renamed last
    assert read_table(store.root / "curves.csv")["seconds"].equals(2 * curves["seconds"])
    with pytest.raises(UserError, match=re.escape(
            f"{store.root / 'curves.csv'} is not the curves.csv its config.json lists: the "
            f"tables are a mix of two commands'")):
        read_results(store.root)
    assert not list(store.root.glob(".*.tmp"))


def test_tables_are_replaced_as_one_set(tmp_path):
    """A failure while the set is written (here the third file cannot be made) leaves every
    old file as it was and no temporary file."""
    from adamrepro.atomic import atomic_set

    old = {tmp_path / "curves.csv": "old curves", tmp_path / "best.csv": "old best"}
    for path, text in old.items():
        path.write_text(text)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FileExistsError):  # its folder would be a file
        atomic_set({tmp_path / "curves.csv": "new", tmp_path / "best.csv": "new",
                    tmp_path / "a-file" / "config.json": "new"})
    assert {p: p.read_text() for p in old} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "best.csv", "curves.csv"]
    # a folder where the last file goes: refused before any file of the set is renamed
    (tmp_path / "steps.csv").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_set({tmp_path / "curves.csv": "new", tmp_path / "best.csv": "new",
                    tmp_path / "steps.csv": "new"})
    assert {p: p.read_text() for p in old} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "best.csv", "curves.csv",
                                                          "steps.csv"]
    atomic_set({tmp_path / "curves.csv": "new", tmp_path / "best.csv": "new"})
    assert [p.read_text() for p in old] == ["new", "new"]


def test_every_file_a_run_writes_is_synced_beside_its_place_before_it_is_renamed(
        tmp_path, cli, data_dir, monkeypatch):
    """The rename makes a file whole to a reader, not to a power cut: each file (a record,
    a table, config.json) is flushed and synced whole before it is renamed into place. Its
    temporary file is beside it (a rename across disks is a copy, no longer atomic), under
    the hidden name that a later command's cleanup looks for (`remove_temporary_files`)."""
    fsync, replace = os.fsync, os.replace
    synced, renamed = {}, []

    def recording_fsync(fd):
        synced[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size
        fsync(fd)

    def recording_replace(source, destination):
        renamed.append((Path(source), Path(destination), os.stat(source).st_size))
        replace(source, destination)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    code, _, err = cli("run", CONFIG, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
                       "--out", tmp_path)
    monkeypatch.undo()
    assert code == 0, err
    folder = tmp_path / "logreg_mnist"
    assert {"curves.csv", "best.csv", "config.json"} <= {d.name for _, d, _ in renamed}
    assert {d for _, d, _ in renamed} >= set(folder.joinpath("runs").glob("*.json"))
    for source, destination, size in renamed:
        assert source.parent == destination.parent, destination
        assert source.match(f".{destination.name}.*.tmp"), source
        assert size > 0 and synced.get(str(source)) == size, destination
    # shared results: readable by everyone, not private as mkstemp makes its files
    assert {os.stat(d).st_mode & 0o777 for _, d, _ in renamed if d.exists()} == {0o644}


def test_a_set_whose_first_file_the_disk_refuses_last_leaves_no_temporary_file(
        tmp_path, monkeypatch):
    """The files of a set are synced last first: a full disk refusing the first (curves.csv,
    the largest) comes after the others are complete, whose temporary files must go too."""
    import errno

    from adamrepro.atomic import atomic_set

    fsync = os.fsync

    def full_on_curves(fd):
        if ".curves.csv." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_on_curves)
    with pytest.raises(OSError, match="No space left"):
        atomic_set({tmp_path / "curves.csv": "new", tmp_path / "best.csv": "new",
                    tmp_path / "config.json": "new"})
    assert list(tmp_path.iterdir()) == []


# config.json edited by hand into JSON the readers once took and then failed on (a
# traceback in a figure, or a figure drawn before the failing one)
CONFIG_EDITS = {
    "config-empty": lambda meta: {**meta, "config": {}},
    "config-text": lambda meta: {**meta, "config": "x"},
    "plot-null": lambda meta: {**meta, "config": {**meta["config"], "plot": None}},
    "training-null": lambda meta: {**meta, "config": {**meta["config"], "training": None}},
    "figure-unknown": lambda meta: {**meta, "config": {
        **meta["config"], "plot": {**meta["config"]["plot"], "figures": ["nope"]}}},
    "metric-number": lambda meta: {**meta, "config": {
        **meta["config"], "selection": {**meta["config"]["selection"], "metric": 5}}},
    "y-unknown": lambda meta: {**meta, "config": {
        **meta["config"], "plot": {**meta["config"]["plot"], "y": "nope"}}},
    "metric-unknown": lambda meta: {**meta, "config": {
        **meta["config"], "selection": {**meta["config"]["selection"], "metric": "nope"}}},
    "no-provenance": lambda meta: {k: v for k, v in meta.items() if k != "provenance"},
    # well-formed, but not what the tables are: every verdict would be labelled, or judged,
    # by it
    "other-scale": lambda meta: {**meta, "scale": "paper"},
    "other-rule": lambda meta: {**meta, "config": {
        **meta["config"], "selection": {**meta["config"]["selection"], "rule": "mean"}}},
}


def _damaged(path: Path, damage: str) -> bytes:
    """curves.csv or best.csv damaged in a way pandas still reads: a table, but not one to
    draw from or judge; or config.json edited into JSON that is no config."""
    if damage in CONFIG_EDITS:
        return json.dumps(CONFIG_EDITS[damage](json.loads(path.read_text()))).encode()
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    first = table["run_id"].iloc[0] if "run_id" in table else None
    if damage == "header":
        return (",".join(table.columns) + "\n").encode()
    if damage.startswith("no-"):  # without a column the readers need
        return table.drop(columns=damage.removeprefix("no-")).to_csv(index=False).encode()
    if damage == "stale":  # best.csv selects a point that curves.csv has no runs of
        table.loc[0, "point_id"] = "a-point-never-trained"
    elif damage in ("gap", "short"):  # one run misses a pass, or its last pass
        passes = table.loc[table["run_id"] == first, "epoch"]
        drop = passes.index[1] if damage == "gap" else passes.idxmax()
        table = table.drop(index=drop)
    else:  # a cell that is blank, or text, where a value (a number, True or False) goes
        column, value = {"text": ("train_loss", "oops"), "blank-seed": ("seed", None),
                         "blank-cost": ("train_loss", None),
                         "text-diverged": ("diverged", "maybe")}[damage]
        table[column] = table[column].astype(object)
        table.loc[table.index[table["epoch"] == 1][0], column] = value
    return table.to_csv(index=False).encode()


# What the one line says of each damage (beside "is damaged (" and the --force fix).
SAID = {"gap": "misses passes between 0 and", "short": "stops at pass",
        "stale": "has no runs in curves.csv", "blank-cost": "no train_loss at pass 1 of run",
        "blank-seed": "'seed' holds a value that is no whole number",
        "text-diverged": "'diverged' holds a value that is neither True nor False",
        "config-empty": "config.name: Field required",
        "config-text": "its 'config' is not an object",
        "plot-null": "config.plot: Input should be a mapping",
        "training-null": "config.training: Input should be a mapping",
        "figure-unknown": "config.plot.figures: unknown figure 'nope'",
        "metric-number": "config.selection.metric: Input should be a valid string",
        "y-unknown": "config.plot.y: 'nope' is not one of its metrics, train_loss, ",
        "metric-unknown": "config.selection.metric: 'nope' is not one of its metrics, ",
        "no-provenance": "no 'provenance'",
        "other-scale": "it says scale 'paper', and curves.csv smoke",
        "other-rule": "it says selection_rule 'mean', and best.csv final"}


@pytest.mark.parametrize("name, damage", [
    ("curves.csv", b"\xff\xfe\x00 not text"),
    ("curves.csv", b""),
    ("best.csv", b"a,b\n1,2\n"),  # a CSV, but not best.csv
    ("config.json", b"{"),
    ("curves.csv", "cut"),  # cut short in the middle of a row
    ("curves.csv", "header"),  # its header alone: no run
    ("curves.csv", "no-train_loss"),  # without the figure's cost
    ("curves.csv", "text"),  # text in a column of numbers
    # what the report and the figures read besides the cost
    ("curves.csv", "no-seed"),
    ("curves.csv", "no-lr"),  # a hyperparameter column config.json declares
    ("curves.csv", "no-test_acc"),  # a metric the model declares
    ("curves.csv", "no-commit"),
    ("best.csv", "no-final_train_loss"),
    ("best.csv", "no-n_seeds"),
    ("curves.csv", "blank-seed"),
    ("curves.csv", "text-diverged"),
    # tables that disagree: a selected point without runs, a run without all its passes or
    # without its cost at one (a wrong mean or final cost, not an error, if read as it is)
    ("best.csv", "stale"),
    ("curves.csv", "gap"),
    ("curves.csv", "short"),
    ("curves.csv", "blank-cost"),
    *(("config.json", edit) for edit in CONFIG_EDITS),
])
def test_damaged_tables_are_one_line_and_run_force_writes_them_again(name, damage, cli,
                                                                     tmp_path, used_out,
                                                                     data_dir):
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    path = out / "logreg_mnist" / name
    said = SAID.get(damage, f"no {damage.removeprefix('no-')!r}" if isinstance(damage, str)
                    and damage.startswith("no-") else "")
    edited = damage in CONFIG_EDITS
    if damage == "cut":  # at half its length, inside a line
        damage = path.read_bytes()[: path.stat().st_size // 2].removesuffix(b"\n")
    elif isinstance(damage, str):
        damage = _damaged(path, damage)
    path.write_bytes(damage)
    before = snapshot(out)
    for command in (("plot", "logreg_mnist"), ("report",), ("compare", out)):
        code, _, stderr = cli(*command, "--out", out) if command[0] != "compare" else cli(
            "compare", used_out, out, "--out", tmp_path / "compared")
        assert code == 2 and stderr.count("\n") == 1, (command, stderr)
        assert f"{out / 'logreg_mnist' / name} is damaged (" in stderr and "--force" in stderr
        assert said in stderr, (said, stderr)
        # the fix keeps the folder's scale and seeds (a bare `run --force` trains the config's
        # default scale, paper, into it)
        said_fix = ({"config.json": ", the --scale and --seeds it ran with, and --force"}
                    .get(name, " --scale smoke --seeds 1 and --force"))  # "{" says neither
        assert edited or f"--out {out}{said_fix}" in stderr, stderr
    assert snapshot(out) == before and not (tmp_path / "compared").exists()
    # what the line says to do
    code, stdout, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", out, "--quiet",
                               "--data-dir", data_dir, "--force")
    assert code == 0 and "trained 0 runs" in stdout, stderr
    assert cli("report", "--out", out)[0] == 0
    assert cli("plot", "logreg_mnist", "--out", out)[0] == 0


@pytest.mark.parametrize("name", ["curves.csv", "best.csv"])
def test_text_in_a_numeric_hyperparameter_of_tables_without_digests_is_one_line(name, cli,
                                                                              tmp_path):
    """The committed Fig. 1 left predates config.json's digests of its tables, so a hand edit
    there is judged by the tables' own checks alone: text in `lr` (a number in every method's
    config) was a ValueError traceback in the sensitivity figure, and an 'α=abc' in the
    report."""
    source = Path(__file__).resolve().parent.parent / "results" / "logreg_mnist"
    out = tmp_path / "results"
    shutil.copytree(source, out / "logreg_mnist", ignore=shutil.ignore_patterns("runs"))
    assert "tables" not in json.loads((out / "logreg_mnist" / "config.json").read_text())
    path = out / "logreg_mnist" / name
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    table["lr"] = table["lr"].astype(object)
    table.loc[table["method"] == "sgd_nesterov", "lr"] = "abc"
    path.write_text(table.to_csv(index=False))
    for command in (("plot", "logreg_mnist"), ("report",)):
        code, _, stderr = cli(*command, "--out", out)
        assert code == 2 and stderr.count("\n") == 1, (command, stderr)
        assert f"{path} is damaged (text in 'lr', a column of numbers)" in stderr, stderr
    # a hyperparameter the config gives as text is text: not judged as a number
    shutil.copytree(source, tmp_path / "clean" / "logreg_mnist",
                    ignore=shutil.ignore_patterns("runs"))
    assert cli("report", "--out", tmp_path / "clean")[0] == 0  # lr_decay holds "sqrt"


def _edit_a_cost(folder: Path) -> None:
    table = pd.read_csv(folder / "curves.csv")
    table.loc[table.index[table["epoch"] == 1][0], "train_loss"] *= 2  # a well-formed table
    (folder / "curves.csv").write_text(table.to_csv(index=False))


def _edit_the_scale(folder: Path) -> None:
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "scale": "quick"}))


SMOKE_FLAGS = " --scale smoke --seeds 1 and --force"


@pytest.mark.parametrize("damage, flags", [
    # hashed in config.json: the fix said "the same 'adamrepro run'" (paper scale)
    (_edit_a_cost, SMOKE_FLAGS),
    (_edit_the_scale, SMOKE_FLAGS),  # it said --scale quick, the damaged file's
    (lambda folder: (folder / "best.csv").unlink(), SMOKE_FLAGS),  # a bare `run`: refused
    # it said a bare `run`, which trained the paper's scale into the folder
    (lambda folder: (folder / "config.json").unlink(),
     ", the --scale and --seeds it ran with, and --force"),
], ids=["cost-edited", "scale-edited", "best-deleted", "config-deleted"])
def test_the_fix_for_damaged_tables_names_the_folder_s_scale(damage, flags, cli, tmp_path,
                                                             used_out, data_dir):
    """Every fix the readers give for a folder whose tables were edited or lost rewrites them
    from its run records at the folder's own scale: followed to the letter, it trains
    nothing."""
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    damage(out / "logreg_mnist")
    code, _, stderr = cli("plot", "logreg_mnist", "--out", out)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"run 'adamrepro run' on its config with --out {out}{flags}" in stderr, stderr
    code, stdout, stderr = cli("run", CONFIG, "--out", out, "--scale", "smoke", "--seeds", "1",
                               "--force", "--quiet", "--data-dir", data_dir)
    assert code == 0 and "trained 0 runs" in stdout, stderr
    assert cli("plot", "logreg_mnist", "--out", out)[0] == 0


def test_plot_of_a_misspelt_experiment_names_those_there(cli, used_out):
    """It said to run a config of the misspelt name, which exists nowhere."""
    code, _, stderr = cli("plot", "logreg_mnst", "--out", used_out)
    assert code == 2 and stderr == (f"adamrepro: error: no results of 'logreg_mnst' under "
                                    f"{used_out} (it has logreg_mnist); name one of those, or "
                                    f"pass the --out it was run with\n"), stderr


def test_a_folder_without_config_json_is_owned_by_its_records_scale(cli, tmp_path, used_out,
                                                                   data_dir):
    """config.json deleted by hand: the scale check read config.json alone, so a bare `run`
    (paper scale) went on into a folder of smoke-scale records and would replace its tables."""
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    (out / "logreg_mnist" / "config.json").unlink()
    code, _, stderr = cli("run", CONFIG, "--out", out, "--dry-run")
    assert code == 2 and stderr == (
        f"adamrepro: error: {out / 'logreg_mnist'} holds smoke-scale run records; write "
        f"paper-scale ones to another folder (e.g. --out results/paper), or pass --force to "
        f"replace its tables with them\n"), stderr
    code, stdout, stderr = cli("run", CONFIG, "--out", out, "--scale", "smoke", "--quiet",
                               "--data-dir", data_dir)
    assert code == 0 and "trained 0 runs" in stdout, stderr


def test_a_folder_of_another_experiment_is_refused_naming_what_it_holds(cli, tmp_path,
                                                                      used_out, data_dir):
    """logreg_mnist's results copied to a folder named mlp: the report judged Fig. 2a's
    claims on them (and said they hold), plot drew them as the MLP's, and run said the
    folder held "a different mlp config"."""
    out = tmp_path / "results"
    shutil.copytree(used_out / "logreg_mnist", out / "mlp")
    before = snapshot(out)
    said = f"{out / 'mlp'} holds results of logreg_mnist"
    for command in (("plot", "mlp", "--out", out), ("report", "--out", out),
                    ("run", CONFIG.parent / "mlp.yaml", "--scale", "smoke", "--out", out,
                     "--data-dir", data_dir, "--quiet")):
        code, _, stderr = cli(*command)
        assert code == 2 and stderr.count("\n") == 1, (command, stderr)
        assert said in stderr and f"move it back to {out / 'logreg_mnist'}" in stderr, stderr
    assert snapshot(out) == before


def test_a_config_json_is_read_with_the_defaults_its_config_leaves_out(cli, tmp_path,
                                                                       used_out):
    """config.json's config is read as a config file is, defaults filled in: one without the
    sections that have defaults (trimmed by hand) is drawn and reported with those, not a
    KeyError."""
    from adamrepro.config import DEFAULT_FIGURES

    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    path = out / "logreg_mnist" / "config.json"
    meta = json.loads(path.read_text())
    meta["config"] = {key: value for key, value in meta["config"].items()
                      if key not in ("plot", "selection")}
    path.write_text(json.dumps(meta))
    code, stdout, stderr = cli("plot", "logreg_mnist", "--out", out)
    assert code == 0, stderr
    drawn = {Path(line.removeprefix("wrote ")).stem for line in stdout.splitlines()}
    assert drawn == set(DEFAULT_FIGURES), stdout
    code, _, stderr = cli("report", "--out", out)
    assert code == 0, stderr


@pytest.mark.parametrize("damage, said", [
    ("cut", "JSONDecodeError"),
    ("{}", "not a run record"),  # JSON, but not a record
    ("[1, 2]", "not a run record"),
    ("rows", "not a run record"),  # a record whose rows are not rows
    # a record edited by hand into one that wrote damaged tables (or a traceback), which
    # `run --force`, the fix the readers give, wrote again: each named here instead
    ("no-rows", "its rows are not passes 0, 1, 2, ... in order"),
    ("text-loss", "'train_loss' at pass 1, not a number"),
    ("last-row-missing", "it ends at pass 1 of 2 without diverging"),
    ("seed-text", "its seed is no whole number"),
    ("other-run-id", "its run_id is 'abc', not the one its file name says"),
    # each named for what it is, before the digest (older records have none)
    ("seed-true", "its seed is no whole number"),  # a bool is an int to Python
    ("diverged-text", "its 'diverged' is neither true nor false"),
    ("passes-swapped", "its rows are not passes 0, 1, 2, ... in order"),
    ("no-seconds", "'no seconds' at pass 1, not a number"),
    ("extra-pass", "it ends at pass 3, after the last of 2"),  # not "without diverging"
    # edited into another, well-formed curve or point: it went into best.csv and the verdicts
    ("better-loss", "edited since it was written: its digest does not match"),
    ("other-lr", "edited since it was written: its digest does not match"),
    ("other-lr-no-digest", "its hyperparameters, seed or point are not those of run "),  # +id
    ("other-seed-no-digest", "its hyperparameters, seed or point are not those of run "),
])
def test_a_damaged_run_record_is_one_line(damage, said, cli, tmp_path, used_out, data_dir):
    out = tmp_path / "results"
    shutil.copytree(used_out, out)
    record = next(path for path in sorted((out / "logreg_mnist" / "runs").glob("*.json"))
                  if not json.loads(path.read_text())["diverged"])
    text = record.read_text()
    edits = {"rows": {"rows": "x"}, "no-rows": {"rows": []}, "seed-text": {"seed": "a"},
             "other-run-id": {"run_id": "abc"}, "seed-true": {"seed": True},
             "diverged-text": {"diverged": "no"}, "other-seed-no-digest": {"seed": 5,
                                                                           "digest": None}}
    rows = json.loads(text)["rows"]
    assert [row["epoch"] for row in rows] == [0, 1, 2]  # the smoke scale's 2 passes
    edits["text-loss"] = {"rows": [rows[0], {**rows[1], "train_loss": "abc"}, rows[2]]}
    edits["last-row-missing"] = {"rows": rows[:-1]}
    edits["passes-swapped"] = {"rows": [rows[0], rows[2], rows[1]]}
    edits["no-seconds"] = {"rows": [rows[0], {k: v for k, v in rows[1].items() if k != "seconds"},
                                    rows[2]]}
    edits["extra-pass"] = {"rows": [*rows, {**rows[-1], "epoch": 3}]}
    edits["better-loss"] = {"rows": [*rows[:-1], {**rows[-1], "train_loss": 0.01}]}
    hparams = {**json.loads(text)["hparams"], "lr": 123.0}
    edits["other-lr"] = {"hparams": hparams}
    edits["other-lr-no-digest"] = {"hparams": hparams, "digest": None}
    damaged = {"cut": text[:100], **{name: json.dumps({
        key: value for key, value in {**json.loads(text), **edit}.items() if value is not None})
        for name, edit in edits.items()}}
    record.write_text(damaged.get(damage, damage))
    args = ("run", CONFIG, "--scale", "smoke", "--out", out, "--quiet", "--data-dir", data_dir)
    code, _, stderr = cli(*args)
    assert code == 2 and stderr.count("\n") == 1, stderr
    if said.endswith("those of run "):
        said += f"{record.stem}: edited since it was written"
    assert f"{record} is damaged ({said}); delete it" in stderr, stderr
    record.unlink()  # as it says
    code, stdout, stderr = cli(*args)
    assert code == 0 and "trained " in stdout, stderr


def test_a_changed_number_of_passes_is_checked_as_a_config_s():
    """`with_epochs` (bench's --passes, the eager reference's passes) builds a new config:
    pydantic's model_copy alone checks nothing, and took -3 passes."""
    import pydantic

    from adamrepro.config import load_experiment

    exp = load_experiment(CONFIG)
    assert exp.with_epochs(3).training.epochs == 3
    for bad in (-3, 0):
        with pytest.raises(pydantic.ValidationError, match="epochs"):
            exp.with_epochs(bad)


def test_each_limit_is_the_largest_value_accepted(tmp_path):
    """Not the first refused: a name of MAX_NAME characters, MAX_SEEDS seeds of grid points
    that make MAX_RUNS runs, and a batch of every training example (full-batch steps)."""
    from adamrepro.config import MAX_NAME, MAX_RUNS, MAX_SEEDS, load_experiment

    config = json.loads(json.dumps(BASE))
    points = MAX_RUNS // MAX_SEEDS
    adam = {**config["methods"]["adam"], "grid": {"lr": [1e-3 * 2**k for k in range(points)]}}
    config.update(name="x" * MAX_NAME, seeds=MAX_SEEDS, methods={"adam": adam})
    config["scales"]["smoke"]["train_size"] = config["training"]["batch_size"]
    path = tmp_path / "limits.yaml"
    path.write_text(yaml.safe_dump(config))
    exp = load_experiment(path)
    scaled = exp.at_scale("smoke")
    assert len(exp.name) == MAX_NAME and scaled.seeds == MAX_SEEDS
    assert len(scaled.methods["adam"].points()) * scaled.seeds == MAX_RUNS
    assert scaled.dataset["train_size"] == scaled.training.batch_size


@pytest.mark.parametrize("refusal", [
    MemoryError("Unable to allocate 44.9 MiB for an array with shape (60000, 28, 28) and data "
                "type uint8"),  # numpy's words, under `ulimit -v`
    OSError(12, "Cannot allocate memory")])  # ENOMEM: an import or a fork refused
def test_memory_the_machine_refuses_is_one_line_and_nothing_written(refusal, cli, tmp_path,
                                                                     data_dir, monkeypatch):
    """Under `ulimit -v` (or on a full machine), loading MNIST's 45 MiB of pixels was a
    MemoryError's traceback. One line says what ran out and the fix, exit 2, and no results
    folder is made. (The allocation is made to fail as such a limit makes it: tests/ cannot
    set one that fails there alone.)"""
    import torch

    def refused(array):
        raise refusal

    monkeypatch.setattr(torch, "from_numpy", refused)
    out = tmp_path / "out"
    code, _, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", out, "--data-dir",
                          data_dir, "--quiet")
    assert code == 2, stderr
    said = f" ({refusal})" if isinstance(refusal, MemoryError) else ""
    assert stderr.splitlines() == [
        f"adamrepro: error: out of memory{said}; give the command more (a job's memory "
        f"request, ulimit -v) or run less at once (run --workers 1, or "
        f"training.max_group_size), then run it again (finished runs are kept)"], stderr
    assert not out.exists()
