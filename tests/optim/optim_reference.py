"""Independent NumPy float64 references, one per optimizer, written from the equations in the
papers (and, where we follow torch, from torch's documented update) rather than from our code.

Each reference is `step(theta, g, state, t, **hparams) -> theta` for one tensor: `state` is a
dict it fills with NumPy arrays under the names our optimizers use, t counts from 1. Every
numeric hyperparameter is required, so a test row cannot lean on a default it shares with the
code under test; only the switches that the paper's plain algorithm has off have defaults.
"""

from __future__ import annotations

import numpy as np


def step_size(lr: float, lr_decay: str, t: int) -> float:
    return {"none": lr, "sqrt": lr / np.sqrt(t)}[lr_decay]


def zeros(state: dict, theta: np.ndarray, *names: str) -> None:
    for name in names:
        state.setdefault(name, np.zeros_like(theta))


def average(theta, state, averaging) -> None:
    """Sec. 7.2: θ̄ ← β·θ̄ + (1 − β)·θ after the step."""
    if averaging:
        zeros(state, theta, "param_avg")
        state["param_avg"] = averaging * state["param_avg"] + (1 - averaging) * theta


def averaged(theta, state, t, averaging) -> np.ndarray:
    """θ̂ = θ̄ / (1 − β^t), or θ itself without averaging."""
    if not averaging:
        return theta
    return state["param_avg"] / (1 - averaging**t)


def adam(theta, g, state, t, *, lr, betas, eps, weight_decay, bias_correction=True,
         beta1_decay_rate=0.0, lr_decay="none", averaging=None, track_step_ratio=False):
    beta1, beta2 = betas
    zeros(state, theta, "exp_avg", "exp_avg_sq")
    g = g + weight_decay * theta
    beta1_t = beta1 * (1 - beta1_decay_rate) ** (t - 1)
    state["exp_avg"] = beta1_t * state["exp_avg"] + (1 - beta1_t) * g
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g**2
    m, v = state["exp_avg"], state["exp_avg_sq"]
    if bias_correction:
        m, v = m / (1 - beta1**t), v / (1 - beta2**t)
    theta = theta - step_size(lr, lr_decay, t) * m / (np.sqrt(v) + eps)
    average(theta, state, averaging)
    return theta


def adamax(theta, g, state, t, *, lr, betas, eps, weight_decay, lr_decay="none",
           averaging=None, eps_in_max=False):
    """Algorithm 2. eps_in_max=True is torch.optim.Adamax's placement of ε, for comparison."""
    beta1, beta2 = betas
    zeros(state, theta, "exp_avg", "exp_inf")
    g = g + weight_decay * theta
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
    if eps_in_max:
        state["exp_inf"] = np.maximum(beta2 * state["exp_inf"], np.abs(g) + eps)
        denominator = state["exp_inf"]
    else:
        state["exp_inf"] = np.maximum(beta2 * state["exp_inf"], np.abs(g))
        denominator = state["exp_inf"] + eps
    theta = theta - step_size(lr, lr_decay, t) / (1 - beta1**t) * state["exp_avg"] / denominator
    average(theta, state, averaging)
    return theta


def adagrad(theta, g, state, t, *, lr, eps, weight_decay, lr_decay="none"):
    zeros(state, theta, "sum")
    g = g + weight_decay * theta
    state["sum"] = state["sum"] + g**2
    return theta - step_size(lr, lr_decay, t) * g / (np.sqrt(state["sum"]) + eps)


def sgd_nesterov(theta, g, state, t, *, lr, momentum, weight_decay, lr_decay="none"):
    g = g + weight_decay * theta
    state["momentum_buffer"] = g if t == 1 else momentum * state["momentum_buffer"] + g
    return theta - step_size(lr, lr_decay, t) * (g + momentum * state["momentum_buffer"])


def rmsprop(theta, g, state, t, *, lr, alpha, eps, momentum, weight_decay, lr_decay="none"):
    zeros(state, theta, "square_avg")
    g = g + weight_decay * theta
    state["square_avg"] = alpha * state["square_avg"] + (1 - alpha) * g**2
    rescaled = g / (np.sqrt(state["square_avg"]) + eps)
    if momentum:
        zeros(state, theta, "momentum_buffer")
        state["momentum_buffer"] = momentum * state["momentum_buffer"] + rescaled
        rescaled = state["momentum_buffer"]
    return theta - step_size(lr, lr_decay, t) * rescaled


def adadelta(theta, g, state, t, *, lr, rho, eps, weight_decay, lr_decay="none"):
    """Zeiler (2012), Algorithm 1, with torch's lr on the step."""
    zeros(state, theta, "square_avg", "acc_delta")
    g = g + weight_decay * theta
    state["square_avg"] = rho * state["square_avg"] + (1 - rho) * g**2
    delta = np.sqrt(state["acc_delta"] + eps) / np.sqrt(state["square_avg"] + eps) * g
    state["acc_delta"] = rho * state["acc_delta"] + (1 - rho) * delta**2
    return theta - step_size(lr, lr_decay, t) * delta


def amsgrad(theta, g, state, t, *, lr, betas, eps, weight_decay, lr_decay="none"):
    beta1, beta2 = betas
    zeros(state, theta, "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    g = g + weight_decay * theta
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g**2
    state["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], state["exp_avg_sq"])
    m_hat = state["exp_avg"] / (1 - beta1**t)
    v_hat = state["max_exp_avg_sq"] / (1 - beta2**t)
    return theta - step_size(lr, lr_decay, t) * m_hat / (np.sqrt(v_hat) + eps)


def adamw(theta, g, state, t, *, lr, betas, eps, weight_decay, lr_decay="none"):
    beta1, beta2 = betas
    zeros(state, theta, "exp_avg", "exp_avg_sq")
    lr_t = step_size(lr, lr_decay, t)
    theta = theta * (1 - lr_t * weight_decay)
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g**2
    m_hat = state["exp_avg"] / (1 - beta1**t)
    v_hat = state["exp_avg_sq"] / (1 - beta2**t)
    return theta - lr_t * m_hat / (np.sqrt(v_hat) + eps)


def nadam(theta, g, state, t, *, lr, betas, eps, weight_decay, momentum_decay,
          lr_decay="none"):
    """Dozat (2016) with torch's momentum schedule μ_t = β1·(1 − ½·0.96^(t·ψ))."""
    beta1, beta2 = betas
    zeros(state, theta, "exp_avg", "exp_avg_sq")
    g = g + weight_decay * theta

    def mu(k):
        return beta1 * (1 - 0.5 * 0.96 ** (k * momentum_decay))

    state["mu_product"] = state.get("mu_product", np.float64(1.0)) * mu(t)
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g**2
    denominator = np.sqrt(state["exp_avg_sq"] / (1 - beta2**t)) + eps
    lr_t = step_size(lr, lr_decay, t)
    gradient_part = (1 - mu(t)) / (1 - state["mu_product"]) * g
    momentum_part = mu(t + 1) / (1 - state["mu_product"] * mu(t + 1)) * state["exp_avg"]
    return theta - lr_t * (gradient_part + momentum_part) / denominator


def adam_two_horizons(theta, g, state, t, *, lr, betas, eps, weight_decay, lr_decay="none"):
    beta1, beta2 = betas
    zeros(state, theta, "exp_avg", "exp_avg_slow")
    g = g + weight_decay * theta
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
    state["exp_avg_slow"] = beta2 * state["exp_avg_slow"] + (1 - beta2) * g
    fast = state["exp_avg"] / (1 - beta1**t)
    slow = state["exp_avg_slow"] / (1 - beta2**t)
    return theta - step_size(lr, lr_decay, t) * fast / (np.abs(slow) + eps)


REFERENCES = {
    "adam": adam,
    "adamax": adamax,
    "adagrad": adagrad,
    "sgd_nesterov": sgd_nesterov,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "amsgrad": amsgrad,
    "adamw": adamw,
    "nadam": nadam,
    "adam_two_horizons": adam_two_horizons,
}
