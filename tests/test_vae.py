"""Fig. 4's VAE on real MNIST: the ELBO's scale, bias correction changing nothing but the
update, and the smoke run through run, plot and report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from adamrepro.config import load_experiment, parse_experiment, recorded_config
from adamrepro.data import DATASETS
from adamrepro.figures.vae_samples import image_grid
from adamrepro.models.vae import VAE, options
from adamrepro.report.claims import CLAIMS
from adamrepro.report.judge import judge
from adamrepro.results.measures import Measured
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import plan

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "vae_bias_correction.yaml"
HALF_EVERYWHERE = 784 * math.log(2)  # -log p(x|z) of a decoder that says 0.5 for every pixel


@pytest.fixture(scope="module")
def test_images(data_dir) -> torch.Tensor:
    mnist = DATASETS["mnist"]
    data = mnist.load(mnist.options({"name": "mnist", "train_size": 16, "test_size": 1000},
                                    "dataset"), data_dir)
    return data.test_x.double()


def _vae(**opts) -> VAE:
    return VAE(options(opts, "model"), (784,), None, [0, 0]).double()


@pytest.mark.parametrize("likelihood", ["bernoulli", "binarized"])
def test_a_decoder_that_says_one_half_scores_784_ln_2(test_images, likelihood):
    """Zero output layers: the decoder's p is 0.5 for every pixel whatever z, and the encoder
    gives q(z|x) = N(0, I) = p(z), so KL = 0 and -ELBO = 784·ln 2 = 543.43 nats exactly."""
    vae = _vae(likelihood=likelihood)
    with torch.no_grad():
        for layer in (vae.enc_out, vae.dec_out):
            layer.weight.zero_()
            layer.bias.zero_()
    x = test_images.unsqueeze(0).expand(2, -1, -1)
    got = vae.evaluate({"x": x}, torch.Generator().manual_seed(0))
    torch.testing.assert_close(got["kl"], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(got["neg_elbo"], torch.full((2,), HALF_EVERYWHERE,
                                                           dtype=torch.float64))


def _known_encoder(mu: list[float], log_var: list[float], **opts) -> VAE:
    """One run whose encoder says q(z|x) = N(mu, exp(log_var)) for every image: zero weights,
    the output layer's bias [mu, log_var]."""
    vae = VAE(options({"latent": len(mu), **opts}, "model"), (1,), None, [0]).double()
    with torch.no_grad():
        for layer in (vae.enc_hidden, vae.enc_out):
            layer.weight.zero_()
            layer.bias.zero_()
        vae.enc_out.bias.copy_(torch.tensor(mu + log_var).view(vae.enc_out.bias.shape))
    return vae


def test_the_kl_term_is_the_closed_form_of_two_gaussians():
    """With q(z|x) = N(μ, σ²) known for every image, the model's KL term is
    KL(N(μ, σ²) ‖ N(0, I)) = ½·Σ(μ² + σ² − 1 − log σ²), as computed here with math, whatever
    the image and the noise drawn; and the objective adds it to the reconstruction term."""
    mu, log_var = [0.5, -1.0, 2.0], [math.log(4.0), -1.0, 0.3]
    expected = 0.5 * sum(m * m + math.exp(v) - 1.0 - v
                         for m, v in zip(mu, log_var, strict=True))
    vae = _known_encoder(mu, log_var, hidden=16)
    x = torch.rand(1, 64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = vae.evaluate({"x": x}, torch.Generator().manual_seed(0))
    torch.testing.assert_close(got["kl"], torch.tensor([expected], dtype=torch.float64))
    vae.generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(vae.objective({"x": x}), got["neg_elbo"])


def test_the_latent_codes_spread_by_sigma_around_mu():
    """z = μ + σ·ε with σ = exp(½·log σ²): a decoder whose logit is z itself (one latent, one
    hidden unit at z + 40, where softplus is the identity, then − 40), and one pixel per
    image. Then −log p(x|z) = softplus(z) − x·z, whose derivative in the pixel x is −z: the
    20,000 images' codes, read back by autograd, have mean μ and standard deviation σ = 2
    for log σ² = ln 4 (within 4 standard errors; σ² = 4 would spread them twice as far)."""
    mu, sigma, n = 0.5, 2.0, 20_000
    vae = _known_encoder([mu], [math.log(sigma ** 2)], hidden=1)
    with torch.no_grad():
        vae.dec_hidden.weight.fill_(1.0)
        vae.dec_hidden.bias.fill_(40.0)
        vae.dec_out.weight.fill_(1.0)
        vae.dec_out.bias.fill_(-40.0)
    x = torch.zeros(1, n, 1, dtype=torch.float64, requires_grad=True)
    recon = vae.evaluate({"x": x}, torch.Generator().manual_seed(0))["recon"]
    (gradient,) = torch.autograd.grad(recon.sum(), x)
    z = -gradient.flatten() * n  # recon is the mean over the n images
    assert z.unique().numel() == n  # one draw per image
    assert abs(z.std().item() - sigma) < 4 * sigma / (2 * n) ** 0.5
    assert abs(z.mean().item() - mu) < 4 * sigma / n ** 0.5


def test_an_untrained_vae_is_near_784_ln_2_on_real_mnist(test_images):
    """N(0, 0.01²) weights: the logits are small, so p ≈ 0.5 and q ≈ p(z); the -ELBO sits
    just above 543.4 nats (546.9 measured on these 1000 test digits)."""
    vae = _vae()
    with torch.no_grad():
            got = vae.evaluate({"x": test_images.unsqueeze(0).expand(2, -1, -1)},
                           torch.Generator().manual_seed(0))
    assert HALF_EVERYWHERE < float(got["neg_elbo"][0]) < HALF_EVERYWHERE + 10
    assert 0 < float(got["kl"][0]) < 5
    torch.testing.assert_close(got["neg_elbo"], got["recon"] + got["kl"])


def test_binarized_pixels_are_zero_or_one(test_images):
    pixels = _vae(likelihood="binarized").pixels(test_images.unsqueeze(0))
    assert set(pixels.unique().tolist()) == {0.0, 1.0}
    assert _vae().pixels(test_images.unsqueeze(0)).unique().numel() > 2  # grey levels kept


def test_turning_bias_correction_off_changes_only_the_update(data_dir):
    """Adam with and without bias correction train in different groups; they still start
    from the same weights and see the same minibatches and the same latent noise. At
    beta1 = beta2 = 0 the bias corrections divide by 1, so the two updates coincide: their
    curves must be identical to the last digit. Elsewhere only the update differs: the
    untrained evaluation (pass 0, same noise) is identical, the trained one is not."""
    raw = {
        "name": "bc", "title": "bc", "dataset": {"name": "mnist", "train_size": 512,
                                                 "test_size": 256},
        "model": {"name": "vae", "hidden": 64, "latent": 8},
        "training": {"batch_size": 128, "epochs": 2, "dtype": "float64"},
        "methods": {
            name: {"optimizer": "adam", "variant": variant,
                   "hparams": {"bias_correction": variant is None},
                   "grid": {"betas": [[0.0, 0.0], [0.9, 0.999]], "lr": [1e-3]}}
            for name, variant in (("adam", None), ("adam+nobias", "nobias"))},
    }
    exp = parse_experiment(raw, "test")
    data = load_data(exp, data_dir, torch.device("cpu")).without_labels()
    with_bc, without_bc = (train_group(exp, group, data) for group in plan(exp))
    timing = ["seconds", "train_seconds"]
    frames = [[pd.DataFrame(c.rows).drop(columns=timing) for c in curves]
              for curves in (with_bc, without_bc)]
    pd.testing.assert_frame_equal(frames[0][0], frames[1][0], check_exact=True)
    pd.testing.assert_frame_equal(frames[0][1].iloc[:1], frames[1][1].iloc[:1],
                                  check_exact=True)
    assert frames[0][1]["train_neg_elbo"].iloc[-1] != frames[1][1]["train_neg_elbo"].iloc[-1]


def test_image_grid_is_a_reshape():
    images = torch.arange(6.0).repeat_interleave(4).view(6, 4)  # six 2x2 images, constant
    grid = image_grid(images, columns=3, side=2, pad=0)
    assert grid.shape == (4, 6)
    assert grid[0].tolist() == [0, 0, 1, 1, 2, 2] and grid[3].tolist() == [3, 3, 4, 4, 5, 5]


def test_the_picture_s_title_tells_the_pictured_run_from_the_mean_over_seeds(
        tmp_path, data_dir, cli, monkeypatch):
    """vae_samples pictures one run of the best point, and its title gave the point's mean
    over seeds as if it were that run's; it names the seed pictured and that run's cost, and
    writes the hyperparameters as the other figures do (β1, β2, α)."""
    from matplotlib.figure import Figure

    from adamrepro.figures import draw
    from adamrepro.figures.vae_samples import best_run
    from adamrepro.results.tables import read_results

    out = tmp_path / "results"
    assert cli("run", CONFIG, "--scale", "smoke", "--seeds", "2", "--out", out, "--quiet",
               "--data-dir", data_dir)[0] == 0
    folder = out / "vae_bias_correction"
    titles = []
    monkeypatch.setattr(Figure, "savefig",
                        lambda fig, *args, **kwargs: titles.append(fig._suptitle.get_text()))
    draw("vae_samples", folder, data_dir=data_dir)
    curves, best, meta = read_results(folder, recorded_config)
    chosen = best_run(best, meta)
    run = curves[curves["run_id"] == chosen["run_ids"].split(";")[0]].sort_values("epoch")
    assert chosen["n_seeds"] == 2
    titles = [" ".join(title.split()) for title in titles]  # wrapped to the figure's width
    assert (f"final train_neg_elbo {chosen['final_train_neg_elbo']:.2f}, mean over 2 seeds; "
            f"pictured: seed {run['seed'].iloc[0]}, {run['train_neg_elbo'].iloc[-1]:.2f})"
            in titles[0]), titles
    assert f"α={chosen['lr']:g}" in titles[0] and "β1=" in titles[0], titles
    # how long the pictured model trained: a smoke or quick model's blur is not the paper's
    dataset, training = meta["config"].dataset, meta["config"].training
    steps = training.epochs * (dataset["train_size"] // training.batch_size)
    assert (f"after {training.epochs} passes over {dataset['train_size']:,} images "
            f"({steps:,} steps), not paper scale's training") in titles[0], titles


def test_the_smoke_run_on_real_data(tmp_path, data_dir, cli, monkeypatch):
    monkeypatch.setenv("ADAMREPRO_DATA", str(data_dir))  # the picture's test images
    out = tmp_path / "results"
    code, _, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", out, "--quiet",
                          "--data-dir", data_dir)
    assert code == 0, stderr
    folder = out / "vae_bias_correction"
    curves = pd.read_csv(folder / "curves.csv")
    for column in ("train_neg_elbo", "train_neg_elbo_full", "test_neg_elbo", "test_recon",
                   "test_kl", "beta1", "beta2", "lr", "bias_correction"):
        assert column in curves.columns, column
    assert set(curves["variant"].fillna("")) == {"", "nobias"}
    untrained = curves[curves["epoch"] == 0]["test_neg_elbo"]
    assert untrained.nunique() == 1  # one initialization and one evaluation noise for all
    assert HALF_EVERYWHERE < untrained.iloc[0] < HALF_EVERYWHERE + 10
    # a group's time is its longest run's, though some of its runs diverged early
    assert curves["diverged"].any()
    timing = json.loads((folder / "config.json").read_text())["timing"]
    longest = curves.groupby(["method", "epoch"])["seconds"].max().groupby("method").max()
    assert timing["seconds"] == pytest.approx(longest.sum(), abs=2e-3)
    best = pd.read_csv(folder / "best.csv")
    assert (best["final_train_neg_elbo"] < untrained.iloc[0] - 100).all()  # it learned
    # every run kept its final parameters, loadable without unpickling code
    record = json.loads(next((folder / "runs").glob("*.json")).read_text())
    params = torch.load(folder / "runs" / f"{record['run_id']}.pt", weights_only=True)
    assert params["enc_hidden.weight"].shape == (784, 500)
    # save_params is not part of a run's identity
    exp = load_experiment(CONFIG).at_scale("smoke")
    plain = exp.model_copy(update={"training": exp.training.model_copy(
        update={"save_params": False})})
    assert ([r.run_id for g in plan(exp) for r in g.runs]
            == [r.run_id for g in plan(plain) for r in g.runs])

    assert cli("plot", "vae_bias_correction", "--out", out)[0] == 0
    for name in ("bias_correction.png", "vae_samples.png", "curves.png"):
        assert (folder / name).stat().st_size > 0, name
    # the test images come from plot's --data-dir: one that lacks them is a mistake, refused
    # before the picture with reconstructions is replaced by one without
    drawn = {path: path.read_bytes() for path in folder.glob("*.p*")}
    code, _, said = cli("plot", "vae_bias_correction", "--out", out, "--data-dir",
                        tmp_path / "empty")
    assert code == 2 and said == (f"adamrepro: error: vae_samples: --data-dir "
                                  f"{tmp_path / 'empty'} does not hold the mnist test images; "
                                  f"pass --data-dir with the data folder of the run, or leave "
                                  f"it out to draw the samples without reconstructions\n"), said
    assert {path: path.read_bytes() for path in folder.glob("*.p*")} == drawn
    # the default data folder (another machine's copy of the results): drawn without them
    monkeypatch.setenv("ADAMREPRO_DATA", str(tmp_path / "empty"))
    code, _, said = cli("plot", "vae_bias_correction", "--out", out)
    assert code == 0 and said.startswith("adamrepro: note: vae_samples: no reconstructions "
                                         "drawn: the mnist test images could not be read "
                                         f"from {tmp_path / 'empty'}; to draw them, give "
                                         f"plot --data-dir (or set $ADAMREPRO_DATA to) the "
                                         f"data folder of the run")
    monkeypatch.setenv("ADAMREPRO_DATA", str(data_dir))
    assert cli("report", "--out", out)[0] == 0
    report = (out / "report.md").read_text()
    assert "vae_bias_correction/vae_samples.png" in report
    fig4 = [line for line in report.splitlines() if line.startswith("| fig4-")]
    assert len(fig4) == 4 and not any("not run yet" in line for line in fig4)

    # the verdicts read (optimizer, variant, beta1, beta2, lr), never the labels
    found = Measured.load(folder)
    names = {"adam": "sgd_plain", "adam+nobias": "rmsprop_momentum"}
    renamed = Measured(found.name, found.curves.assign(method=found.curves["method"].map(names)),
                       found.best.assign(method=found.best["method"].map(names)), found.meta)
    for claim in (c for c in CLAIMS if c.experiment == "vae_bias_correction"):
        original, relabelled = (judge(claim, {found.name: m}) for m in (found, renamed))
        assert relabelled.status == original.status, claim.id
        # the numbers match, with each method called by its label
        called = relabelled.numbers
        for label, was in (("rmsprop_momentum", "adam+nobias"), ("sgd_plain", "adam")):
            called = called.replace(label, was)
        assert called == original.numbers

    # a damaged parameters file is one line naming it and the way out, not a traceback, nor
    # torch's advice to load it with weights_only=False; an empty one too (torch raises
    # EOFError, which click would take for Ctrl-D: "Aborted", exit 130)
    for damage in (b"not a torch file", b""):
        for saved in (folder / "runs").glob("*.pt"):
            saved.write_bytes(damage)
        figures = {path: path.stat().st_mtime_ns for path in folder.glob("*.p*")}
        code, _, err = cli("plot", "vae_bias_correction", "--out", out)
        assert code == 2 and "Traceback" not in err and "weights_only" not in err, err
        assert ".pt: not the saved parameters of run" in err and "is damaged" in err, err
        # no figure redrawn: the command failed, and the figures drawn before the failing
        # one (curves, bias_correction) are not left newer than the rest
        assert {path: path.stat().st_mtime_ns for path in folder.glob("*.p*")} == figures


def test_sfo_refuses_the_vae_whose_objective_samples_noise():
    """SFO assumes f_i(θ) is the same at every evaluation; the VAE draws ε at every step, so a
    config racing SFO on it is one line naming the noise, as one with dropout is."""
    from adamrepro.errors import UserError

    raw = {
        "name": "sfo-vae", "title": "SFO on the VAE", "dataset": {"name": "mnist"},
        "model": {"name": "vae", "hidden": 16, "latent": 4},
        "training": {"batch_size": 128, "epochs": 1},
        "methods": {"sfo": {"optimizer": "sfo", "grid": {}}},
    }
    with pytest.raises(UserError, match="sfo assumes a deterministic objective, but this model "
                                        "draws noise in training"):
        parse_experiment(raw, "test")
    raw["methods"]["sfo"]["hparams"] = {"allow_stochastic": True}  # the documented way out
    assert parse_experiment(raw, "test").methods["sfo"].optimizer == "sfo"


@pytest.mark.parametrize(("dataset", "said"), [
    ({"name": "mnist", "pixel_scale": 1}, "pixel_scale 1 leaves pixels up to 255; set "
                                          "dataset.pixel_scale: 255"),
    ({"name": "cifar10"}, "zca-whitened images are centred, not in [0, 1]; set "
                          "dataset.whitening: none"),
    ({"name": "imdb"}, "word counts run above 1; set dataset.features: binary"),
])
def test_the_vae_refuses_inputs_that_are_no_probabilities(dataset, said):
    """Its likelihood reads each input as a probability: grey levels of 0-255 (MNIST with
    `pixel_scale: 1`), whitened images or word counts gave a cross-entropy of no meaning,
    and trained without a word. Refused at load, naming the fix; the fix is accepted."""
    from adamrepro.errors import UserError

    raw = {
        "name": "vae-inputs", "title": "the VAE's inputs", "dataset": dataset,
        "model": {"name": "vae", "hidden": 16, "latent": 4},
        "training": {"batch_size": 128, "epochs": 1},
        "methods": {"adam": {"optimizer": "adam", "grid": {}}},
    }
    with pytest.raises(UserError, match="model vae reads each input as a probability in "
                                        r"\[0, 1\], and dataset") as caught:
        parse_experiment(raw, "test")
    assert str(caught.value).endswith(said)
    fixed = dict(dataset, **dict([said.rsplit("set dataset.", 1)[1].split(": ")]))
    fixed = {k: int(v) if v.isdigit() else v for k, v in fixed.items()}
    assert parse_experiment({**raw, "dataset": fixed}, "test").dataset == fixed
    # a model of other inputs takes them as they are, and so does the VAE that binarises
    # them at 0.5 first
    assert parse_experiment({**raw, "model": {"name": "logreg"}, "dataset": dataset}, "test")
    binarising = {**raw["model"], "likelihood": "binarized"}
    assert parse_experiment({**raw, "model": binarising, "dataset": dataset}, "test")


@pytest.mark.parametrize("rule", ["final", "mean"])
def test_the_pictured_run_is_chosen_between_methods_by_the_selection_rule(rule):
    """vae_samples pictures the best of the methods' selected points, each chosen under
    `selection.rule`: the choice between them must follow the same rule (it took the final
    cost even where the points were chosen by their mean over passes). The committed quick
    tables, with the two rules made to disagree."""
    from adamrepro.figures.vae_samples import best_run
    from adamrepro.results.tables import read_results

    _, best, meta = read_results(Path(__file__).resolve().parent.parent / "results"
                                 / "quick-cpu" / "vae_bias_correction", recorded_config)
    config = meta["config"]
    metric = config.selection.metric
    best = best.head(2).copy()
    assert len(best) == 2
    best[f"final_{metric}"] = [1.0, 2.0]  # the first is better by its final cost
    best[f"mean_{metric}"] = [2.0, 1.0]  # the second by its mean over passes
    meta = {**meta, "config": config.model_copy(update={
        "selection": config.selection.model_copy(update={"rule": rule})})}
    chosen = best_run(best, meta)
    assert chosen["method"] == best["method"].iloc[0 if rule == "final" else 1]
