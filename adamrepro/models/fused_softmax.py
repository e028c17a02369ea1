"""The training objective of G multiclass logistic regressions over one shared minibatch,
forward and backward written by hand (logreg's `fused_objective`).

Per run g: mean_b [logsumexp(z_bg) − z_bg,y_b] + (l2/2)·‖W_g‖², with z_bg = x_b·W_g + b_g.
Its gradient needs no autograd graph: with p the softmax of z and δ_y the one-hot label,
∂/∂z_bg = (p_bg − δ_y_b)/B, so ∂/∂W_g = xᵀ·∂z_g + l2·W_g and ∂/∂b_g = Σ_b ∂z_bg.

Why: on a CPU the logistic regression's step is a few small matmuls among ~40 other
operations, each costing microseconds of dispatch and an autograd node whatever its size,
and the L2 penalty alone is six of them (square, sum, scale, and their backward, then the
sum of two gradients of W). Computed here, the forward keeps the softmax's exponentials for
the backward and the penalty's gradient is one fused multiply-add into the weights'
gradient. The arithmetic is the same function and the same gradient; float rounding
differs (another summation order), which tests/test_fused_objective.py bounds against
autograd (float64, rtol 1e-12).

The logits are one (G·C, D)·(D, B) matmul, kept in that (G, C, B) layout throughout, and
the weights' gradient one (G·C, B)·(B, D) matmul: each run's (C, D) block is the storage of
weights laid out out-major (`models.base.out_major`, which the runner gives adamrepro's own
optimizers), so neither is copied into or out of a matmul layout; on contiguous weights
`reshape` and autograd copy them, with the same values. Every reduction over the C classes
runs along the middle dimension, vectorized over the examples. A maximum that is ±inf is
clamped to the largest finite float before the exponentials, so a diverged run's loss is
inf or NaN exactly where torch.logsumexp's is.

The 7-run Adam group of Fig. 1 (left), minibatch 128, one thread: 1.77 ms a step through
autograd, 1.47 ms fused on out-major weights; an evaluation of its 70,000 digits 157 → 103
ms (README, Speed, "The fused logistic regression").
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class SoftmaxRegressionObjective(torch.autograd.Function):
    """(x (B, D), weight (G, D, C), bias (G, 1, C), y (B,), l2) -> (G,) objectives."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, y: Tensor,
                l2: float) -> Tensor:
        G, B = weight.shape[0], x.shape[0]
        z = logits(x, weight, bias)
        labels = y.view(1, 1, B).expand(G, 1, B)
        losses, exps, sums = cross_entropy(z, labels, z.amax(1, keepdim=True))
        objective = losses.view(G, B).mean(1)
        if l2 != 0.0:
            objective = objective + 0.5 * l2 * weight.square().flatten(1).sum(1)
        ctx.save_for_backward(x, weight, exps, sums, labels)
        ctx.l2 = l2
        return objective

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, exps, sums, labels = ctx.saved_tensors
        G, C, B = exps.shape
        D = weight.shape[1]
        # the softmax, in place: a second backward through this graph (retain_graph) is
        # refused by autograd's check of saved tensors, never computed from these
        dz = exps.div_(sums)
        dz.scatter_add_(1, labels, torch.full_like(labels, -1, dtype=dz.dtype))
        dz.mul_((grad / B).view(G, 1, 1))
        # (G·C, B)·(B, D): each run's (C, D) block, which is the weights' own storage when
        # they are out-major, so autograd keeps it uncopied
        grad_weight = (dz.view(G * C, B) @ x).view(G, C, D).transpose(1, 2)
        if ctx.l2 != 0.0:
            grad_weight.addcmul_(weight, (grad * ctx.l2).view(G, 1, 1))
        grad_bias = dz.sum(2).view(G, 1, C)
        return None, grad_weight, grad_bias, None, None


def logits(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(G, C, B): every run's logits of every example, as one (G·C, D)·(D, B) matmul."""
    G, D, C = weight.shape
    z = (weight.transpose(1, 2).reshape(G * C, D) @ x.t()).view(G, C, x.shape[0])
    z += bias.view(G, C, 1)
    return z


def cross_entropy(z: Tensor, labels: Tensor, top: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(G, 1, B) losses logsumexp(z) − z_y over the classes of (G, C, B) logits, given their
    maximum `top` (G, 1, B), with the softmax's parts: the shifted exponentials and their
    sums. An infinite maximum, made finite, still gives an infinite logsumexp, where z − ∞
    would give NaN (torch.logsumexp zeroes it instead, in two more operations)."""
    largest = torch.finfo(z.dtype).max
    shift = top.clamp(-largest, largest)
    exps = (z - shift).exp_()
    sums = exps.sum(1, keepdim=True)
    return sums.log().add_(shift).sub_(z.gather(1, labels)), exps, sums


def softmax_regression_objective(x: Tensor, weight: Tensor, bias: Tensor, y: Tensor,
                                 l2: float) -> Tensor:
    """Per run (G,): mean softmax cross-entropy of x·W_g + b_g against y, plus (l2/2)·‖W_g‖²;
    x (B, D) and y (B,) shared by every run."""
    return SoftmaxRegressionObjective.apply(x, weight, bias, y, l2)


@torch.no_grad()
def softmax_regression_metrics(x: Tensor, weight: Tensor, bias: Tensor,
                               y: Tensor) -> tuple[Tensor, Tensor]:
    """Per run (G,): the mean softmax cross-entropy of x·W_g + b_g against y (no penalty),
    and the number of examples whose first largest logit is y's, as `argmax` picks it.

    For evaluation over large chunks (10,000 examples) the logits are computed transposed,
    (G·C, D)·(D, B): ~20% faster on a CPU than (B, D)·(D, G·C), and in that (G, C, B)
    layout every reduction over the classes runs along the middle dimension, vectorized
    over the examples, where over a last dimension of 10 classes torch's reductions are
    slow. `argmax` over a middle dimension is slower still, so the first largest logit is
    found as the one of largest weight C − c among the largest: torch's argmax, NaN
    included (it takes a NaN for the largest, the first one if there are several)."""
    G, C = weight.shape[0], weight.shape[2]
    B = x.shape[0]
    z = logits(x, weight, bias)
    top = z.amax(1, keepdim=True)  # NaN where a logit is
    labels = y.view(1, 1, B).expand(G, 1, B)
    losses, _, _ = cross_entropy(z, labels, top)
    picked = (z == top).logical_or_(z.isnan())
    rank = torch.arange(C, 0, -1, device=z.device, dtype=torch.uint8 if C < 256 else
                        torch.int32).view(1, C, 1)
    first = C - (picked * rank).amax(1, keepdim=True)
    correct = (first == labels).sum((1, 2))
    return losses.view(G, B).mean(1), correct
