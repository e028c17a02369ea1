"""What does one SFO step cost? Times `SFO.step` on Fig. 2b's problem (an MLP 784-H-H-10,
ReLU, cross-entropy + L2 1e-4, on real MNIST split into N fixed minibatches of 128) at any
width and number of subfunctions, after enough warm-up steps for the subspace to fill
(K_max = 1.5·(2N + 3) directions). Prints the time per step, the subspace and the state's
size with the machine, and writes <out>/bench/sfo-<device>-h<H>-n<N>.json.

    PYTHONPATH=. python scripts/bench_sfo.py --hidden 256 --subfunctions 23     # quick scale
    PYTHONPATH=. python scripts/bench_sfo.py --hidden 1000 --subfunctions 468 \\
        --device cuda --warmup 1500 --steps 200                                 # paper scale

A step's cost is mostly reads of the dim × K float64 basis (Gram-Schmidt of the new
gradient: four; the move to the new point: one) and, at large N, the K × K algebra of the
summed model (a Cholesky solve, and an eigendecomposition for each subfunction's first
evaluation). The MLP here is a plain torch module, not the runner's batched model: it times
the optimizer, not the runner.
"""

from __future__ import annotations

import adamrepro.script_start  # noqa: F401  (first: a Ctrl-C while the rest import is one line)

# isort: split

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from adamrepro.atomic import atomic_write
from adamrepro.bench.machine import synchronize
from adamrepro.cli.params import ScriptParser, check_counts, folder_argument
from adamrepro.data import mnist
from adamrepro.data.download import default_data_dir
from adamrepro.errors import UserError, script_exit
from adamrepro.optim.sfo import SFO, subspace_size
from adamrepro.provenance import provenance
from adamrepro.results.store import check_writable
from adamrepro.runner.sweep import resolve_device

BATCH = 128
L2 = 1e-4


def bench(hidden: int, n: int, warmup: int | None, steps: int, device: torch.device,
          data_dir: Path) -> dict:
    """Time `steps` SFO steps after `warmup` (None: K_max, when the subspace first fills)."""
    data = mnist.load(mnist.Options(), data_dir)
    if n * BATCH > len(data.train_y):
        raise UserError(f"--subfunctions {n}: {n} minibatches of {BATCH} need {n * BATCH:,} "
                        f"digits, MNIST has {len(data.train_y):,}; use at most "
                        f"{len(data.train_y) // BATCH}")
    x = data.train_x[: n * BATCH].float().to(device)
    y = data.train_y[: n * BATCH].to(device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                          nn.ReLU(), nn.Linear(hidden, 10)).to(device)
    batches = list(torch.arange(len(y), device=device).chunk(n))
    sfo = SFO(model.parameters(), num_subfunctions=n)
    dim = sum(p.numel() for p in model.parameters())
    if warmup is None:
        warmup = subspace_size(n, dim)[1]

    def closure(index: int) -> torch.Tensor:
        sfo.zero_grad(set_to_none=True)
        rows = batches[index]
        loss = F.cross_entropy(model(x[rows]), y[rows])
        loss = loss + 0.5 * L2 * sum(p.square().sum() for p in model.parameters())
        loss.backward()
        return loss

    # the paper's size warms up for 1-2 minutes on a GPU: said as it goes, not in silence
    print(f"bench_sfo: {n} subfunctions, {dim:,} parameters: {warmup} warm-up steps, then "
          f"{steps} timed", file=sys.stderr, flush=True)
    started = time.perf_counter()
    for done in range(1, warmup + 1):
        sfo.step(closure)
        if done % 250 == 0 and done < warmup:
            print(f"bench_sfo: warm-up step {done} of {warmup}, "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    synchronize(device)
    warmup_seconds = time.perf_counter() - started
    state = sfo.state[next(iter(model.parameters()))]
    evaluations, collapses = state["evaluations"], state["collapses"]
    ranks = []
    started = time.perf_counter()
    for _ in range(steps):
        sfo.step(closure)
        ranks.append(state["rank"])
    synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "hidden": hidden, "subfunctions": n, "dim": dim, "k_min": state["k_min"],
        "k_max": state["k_max"], "mean_rank": sum(ranks) / len(ranks),
        "warmup_steps": warmup, "warmup_seconds": warmup_seconds, "steps": steps,
        "step_ms": 1e3 * seconds / steps,
        "evaluations_per_step": (state["evaluations"] - evaluations) / steps,
        "collapses": state["collapses"] - collapses,
        "active": int(state["active"].sum()),
        "basis_mib": state["basis"].numel() * 8 / 2**20,
        "state_mib": sfo.memory_bytes() / 2**20,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256, help="width of both hidden layers")
    parser.add_argument("--subfunctions", type=int, default=23, help="N (minibatches of 128)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: until the subspace first fills)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=folder_argument, default=Path("results"),
                        help="results folder (writes <out>/bench/)")
    parser.add_argument("--data-dir", type=folder_argument, default=None)
    args = parser.parse_args(argv)
    try:
        check_counts({"--hidden": args.hidden, "--subfunctions": args.subfunctions,
                      "--steps": args.steps})
        check_counts({"--warmup": args.warmup}, minimum=0)
        # found after the bench (minutes of a GPU at the paper's size), it cost the number
        check_writable(args.out / "bench")
        device = resolve_device(args.device)
        result = bench(args.hidden, args.subfunctions, args.warmup, args.steps, device,
                       args.data_dir or default_data_dir())
    except UserError as err:
        print(f"bench_sfo: error: {err}", file=sys.stderr)
        return 2
    origin = provenance(device)
    result = {**result, "device": origin["device"], "torch_version": origin["torch_version"],
              "commit": origin["commit"], "date": origin["date"],
              "command": " ".join(["scripts/bench_sfo.py", *(argv or sys.argv[1:])])}
    print(f"SFO on MLP 784-{args.hidden}-{args.hidden}-10 (dim {result['dim']:,}), "
          f"N = {args.subfunctions}: {result['step_ms']:.1f} ms/step over {args.steps} steps "
          f"after {result['warmup_steps']} ({result['warmup_seconds']:.1f} s); mean rank "
          f"{result['mean_rank']:.0f} of K_max {result['k_max']}, "
          f"{result['collapses']} collapses, {result['evaluations_per_step']:.2f} "
          f"evaluations/step; basis {result['basis_mib']:,.0f} MiB, state "
          f"{result['state_mib']:,.0f} MiB")
    print(f"{result['device']}, torch {result['torch_version']} ({result['threads']} threads), "
          f"commit {result['commit']}")
    path = args.out / "bench" / (f"sfo-{torch.device(device).type}-h{args.hidden}"
                                 f"-n{args.subfunctions}.json")
    atomic_write(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    script_exit(main, "bench_sfo", "measure again")
