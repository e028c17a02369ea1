"""How should G runs of the Fig. 3 CNN train as one computation? Times one training step
(forward, backward of the summed objective) of G runs three ways and prints the numbers:

- stacked: `models.cnn.CNN`, grouped convolutions over (B, G·C, H, W) (what adamrepro uses);
- vmap: `torch.func.vmap` of `functional_call` over G stacked copies of a plain nn.Module
  (`bench.reference.CNNReference`);
- loop: G plain modules one after another (what G separate scripts would do).

    PYTHONPATH=. python scripts/bench_cnn_batching.py [--device cpu] [--groups 1 4 6] [--batch 128]
"""

from __future__ import annotations

import adamrepro.script_start  # noqa: F401  (first: a Ctrl-C while the rest import is one line)

# isort: split

import argparse
import copy
import sys
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from adamrepro.bench.reference import CNNReference
from adamrepro.cli.params import ScriptParser, check_counts
from adamrepro.errors import UserError, script_exit
from adamrepro.models.cnn import CNN, Options
from adamrepro.runner.sweep import resolve_device


def timed(step, device, repeats: int) -> float:
    """Median seconds of `step` after two warm-up calls."""
    times = []
    for index in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(G: int, args, device: torch.device, opts: Options) -> dict[str, float]:
    """Median seconds per training step of G runs, stacked, vmapped and looped."""
    seeds = list(range(G))
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    xs = x.expand(G, *x.shape) if args.shared else torch.randn(G, *x.shape, device=device)
    ys = y.expand(G, args.batch)

    stacked = CNN(opts, (3, 32, 32), 10, seeds).to(device)

    def stacked_step():
        stacked.zero_grad(set_to_none=True)
        stacked.objective({"x": xs, "y": ys}).sum().backward()

    plain = [CNNReference(opts, (3, 32, 32), 10, seed).to(device) for seed in seeds]
    params, buffers = stack_module_state(plain)
    base = copy.deepcopy(plain[0]).to("meta")

    def one_run(p, b, images, labels):
        logits = functional_call(base, (p, b), (images,))
        return F.cross_entropy(logits, labels)

    batched = vmap(one_run, in_dims=(0, 0, None if args.shared else 0, None))

    def vmap_step():
        for p in params.values():
            p.grad = None
        batched(params, buffers, x if args.shared else xs, y).sum().backward()

    def loop_step():
        for g, model in enumerate(plain):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs[g]), y).backward()

    with torch.no_grad():  # the three compute the same losses
        expected = stacked.objective({"x": xs, "y": ys})
        torch.testing.assert_close(batched(params, buffers, x if args.shared else xs, y),
                                   expected, rtol=1e-4, atol=1e-5)
    results = {name: timed(step, device, args.repeats)
               for name, step in (("stacked", stacked_step), ("vmap", vmap_step),
                                  ("loop", loop_step))}
    return results


def report(G: int, batch: int, results: dict[str, float]) -> None:
    print(f"G={G}: " + ", ".join(f"{name} {seconds * 1e3:.0f} ms/step "
                                 f"({G * batch / seconds:.0f} run-images/s)"
                                 for name, seconds in results.items()))


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4, 6])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shared", action=argparse.BooleanOptionalAction, default=True,
                        help="every run sees the same minibatch (one seed), as in Fig. 3")
    args = parser.parse_args(argv)
    try:
        check_counts({"--groups": min(args.groups), "--batch": args.batch,
                      "--repeats": args.repeats})
        device = resolve_device(args.device)
    except UserError as err:
        print(f"bench_cnn_batching: error: {err}", file=sys.stderr)
        return 2
    opts = Options()
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch}, shared input: {args.shared}")
    for G in args.groups:
        report(G, args.batch, measure(G, args, device, opts))
    return 0


if __name__ == "__main__":
    script_exit(main, "bench_cnn_batching", "measure again")
