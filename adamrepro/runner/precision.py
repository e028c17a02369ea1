"""How float32 training computes: `training.precision` (fp32, tf32, bf16).

- `fp32`: IEEE float32 throughout. On CUDA the matmul and the cuDNN convolution flags are
  pinned to full float32 while a group trains and evaluates: torch's own default lets cuDNN
  convolutions use TF32, so without the pin "fp32" would not be float32 for the CNN. (The
  logistic regressions and the MLP have no convolutions; their float32 curves are unchanged.)
- `tf32`: float32 storage; on CUDA every float32 matmul and convolution of a training pass
  (forward and backward) runs on TF32 tensor cores (inputs rounded to a 10-bit mantissa,
  float32 accumulation). A CPU has no TF32 units: there tf32 runs exactly as fp32, and the
  runs record precision `fp32` (`applied`), which is what their arithmetic was.
- `bf16`: `torch.autocast(bfloat16)` around the forward pass and loss of every training step,
  eager, graphed or inside an optimizer's closure: autocast's ops (matmuls, convolutions)
  compute in bfloat16, losses in float32; parameters, gradients and optimizer state stay
  float32 (standard mixed precision; bfloat16 has float32's exponent range, so no loss
  scaling). `cache_enabled=False`: autocast's cache of cast weights must not outlive a step,
  which a CUDA-graph capture would otherwise record.

Evaluation (the objective on the whole training set and the test metrics after every pass)
runs in float32 at every precision, so that every curve measures the same function of the
parameters; only `train_<objective>`, the minibatch cost as trained, is computed at the
training precision. The flags are set for the block that needs them and restored after, so
no group's setting leaks into the next group, another command or a test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from adamrepro.config import PRECISIONS


@contextlib.contextmanager
def float32_math(tf32: bool) -> Iterator[None]:
    """CUDA float32 matmuls and cuDNN convolutions in TF32 (`tf32`) or in full float32 for
    the block; the previous flags come back after it, whatever they were. The legacy
    `allow_tf32` flags, which every torch we support has: torch refuses a mix of them with
    its newer `fp32_precision` API, so we read and write only these."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32, cudnn.allow_tf32 = tf32, tf32
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@dataclass(frozen=True)
class Precision:
    """A group's `training.precision` on the device it trains on."""

    name: str = "fp32"
    device_type: str = "cpu"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.name!r}")

    @property
    def applied(self) -> str:
        """What the arithmetic was, as the runs record it: `fp64` for float64 parameters,
        `fp32` for tf32 where there are no TF32 units (not CUDA), else the name."""
        if self.dtype == torch.float64:
            return "fp64"
        if self.name == "tf32" and self.device_type != "cuda":
            return "fp32"
        return self.name

    def training(self) -> contextlib.AbstractContextManager:
        """Around a whole training pass (forward, backward, optimizer; a CUDA graph's capture
        and replays): TF32 or full float32 math on CUDA. Nothing on a CPU, whose float32
        matmuls are IEEE under torch's default that we leave alone."""
        if self.device_type != "cuda":
            return contextlib.nullcontext()
        return float32_math(self.name == "tf32")

    def evaluation(self) -> contextlib.AbstractContextManager:
        """Around an evaluation: full float32 on CUDA at every precision."""
        if self.device_type != "cuda":
            return contextlib.nullcontext()
        return float32_math(False)

    def forward(self) -> contextlib.AbstractContextManager:
        """Around a training step's forward pass and loss (never its backward pass, as
        torch's autocast guide asks): bfloat16 autocast for bf16."""
        if self.name != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16, cache_enabled=False)


FP32 = Precision()


def precision_of(training, device: torch.device) -> Precision:
    """The precision a group with these training settings has on `device`."""
    return Precision(training.precision, device.type, getattr(torch, training.dtype))
