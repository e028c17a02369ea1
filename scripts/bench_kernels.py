"""Do the kernel switches pay? Times `training.compile_optimizer`, `compile_model` and
`channels_last` (each alone, then all together), and `training.precision` tf32 (on a GPU)
and bf16, against the plain loop (every switch off, float32) on one batched group of each
experiment, and checks that every variant traced the plain loop's step losses
(adamrepro/bench/kernels.py says how; a precision variant's differ by design). Prints a
table per experiment with the machine and writes
<out>/kernels/<experiment>-<device>-<scale>.csv (one row per variant).

    PYTHONPATH=. python scripts/bench_kernels.py logreg_mnist mlp cnn_cifar10 \\
        --device cuda --scale paper --steps 100 --unverified-data

Exit status 1 when a variant's losses are not `same` as the plain loop's (in float64, or in
float32 beyond the rounding control; a precision variant's in float64 alone), or a variant
fails (its error is printed; the others are still timed).
"""

from __future__ import annotations

import adamrepro.script_start  # noqa: F401  (first: a Ctrl-C while the rest import is one line)

# isort: split

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from adamrepro.atomic import atomic_write
from adamrepro.bench.kernels import VARIANTS, bench_kernels, passed
from adamrepro.cli.params import ScriptParser, check_counts, folder_argument, without_data_check
from adamrepro.config import load_experiment, resolve_config_arg
from adamrepro.data.download import default_data_dir
from adamrepro.errors import UserError, script_exit
from adamrepro.provenance import provenance
from adamrepro.results.store import check_writable
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import GraphedStep
from adamrepro.runner.host_memory import keep_freed_memory
from adamrepro.runner.sweep import resolve_device
from adamrepro.wording import count


def report(result: dict) -> None:
    print(f"\n{result['experiment']}: method {result['method']}, {result['group_size']} runs "
          f"batched, batch {result['batch_size']} of {result['train_size']}, "
          f"{result['dtype']}; {result['repeats']} x {result['steps']} timed steps per "
          f"variant after {result['warmup_steps']} warm-up steps")
    print(f"{result['hardware']} ({count(result['threads'], 'torch thread')}), torch "
          f"{result['torch_version']}; load average {result['load_average_before']:.2f} "
          f"before, {result['load_average_after']:.2f} after, on {result['cpu_count']} cores")
    header = (f"{'variant':<18} {'warm-up s':>10} {'ms/step':>9} {'min-max':>15} "
              f"{'speed-up':>9} {'max rel. diff':>14} {'rounding':>9} {'of allowed':>10} "
              f"{'float64':>9}  losses")
    print(header)
    print("-" * len(header))
    for row in result["rows"]:
        spread = f"{row['step_ms_min']:.2f}-{row['step_ms_max']:.2f}"
        print(f"{row['variant']:<18} {row['warmup_seconds']:>10.2f} {row['step_ms']:>9.2f} "
              f"{spread:>15} {row['speedup']:>8.2f}x {row['max_relative_difference']:>14.1e} "
              f"{row['rounding_floor']:>9.1e} {row['of_allowed']:>10.2f} "
              f"{row['float64_max_relative_difference']:>9.1e}  {row['verdict']}")
    first = result["rows"][0]
    print("max rel. diff: of any step's loss from the plain loop's; rounding: the same for "
          "the plain loop with every weight one float step off before every step; of allowed: the "
          f"largest difference over its allowance, max({first['rtol']:g}, 10x "
          f"rounding) run by run (<= 1: same); float64: the largest difference of "
          f"{result['float64_steps']} steps trained both ways in float64 (same arithmetic "
          f"<= {first['float64_rtol']:g}). losses: same; float32 only (same in float64, "
          f"beyond the float32 allowance: rounding that the control underestimates, or a "
          f"float32 kernel bug: the size tells); DIFFERENT (float64 differs); other "
          f"precision (tf32, bf16: the plain loop in float64, float32 losses coarser by design)")
    for name, error in result["failed"].items():
        print(f"{name}: FAILED ({error})")
    for row in result["rows"]:
        if row.get("float64_error"):
            print(f"{row['variant']}: the float64 check FAILED ({row['float64_error']})")


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", default=["logreg_mnist"],
                        help="configs/<experiment>.yaml, or its name")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--scale", default="quick", choices=["smoke", "quick", "paper"])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed blocks per variant, taken in turn")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (compilation, graph capture); at least 4")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=list(VARIANTS), help="(those that apply to the model)")
    parser.add_argument("--method", default=None,
                        help="the method whose first group is timed (default: adam)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", type=folder_argument, default=Path("results"),
                        help="results folder (writes <out>/kernels/)")
    parser.add_argument("--data-dir", type=folder_argument, default=None)
    parser.add_argument("--unverified-data", action="store_true",
                        help="read data files whose checksum differs from the official one")
    args = parser.parse_args(argv)
    try:
        check_counts({"--steps": args.steps, "--repeats": args.repeats, "--threads": args.threads})
        # the graph's own warm-up and one step more; a smaller one was raised without a word
        check_counts({"--warmup": args.warmup}, minimum=GraphedStep.WARMUP + 1)
        # found after the whole bench, a folder it cannot write cost the measurement
        check_writable(args.out / "kernels")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        keep_freed_memory(device)  # as `adamrepro run` trains on a CPU
        # every config checked before any is timed: a typo costs nothing, writes nothing
        experiments = [load_experiment(resolve_config_arg(name)) for name in args.experiments]
        return run(args, device, experiments)
    except UserError as err:
        print(f"bench_kernels: error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, device: torch.device, experiments: list) -> int:
    same = True
    for exp in experiments:
        if args.unverified_data:
            exp = without_data_check(exp, args.data_dir or default_data_dir())
        exp = exp.at_scale(args.scale)
        data = load_data(exp, args.data_dir or default_data_dir(), device)
        result = bench_kernels(exp, data, device, args.variants, args.method, args.steps,
                               args.warmup, args.repeats,
                               on_variant=lambda v: print(f"  {v} ...", flush=True))
        report(result)
        origin = provenance(device)
        meta = {key: value for key, value in result.items() if key not in ("rows", "failed")}
        table = pd.DataFrame([{**meta, "scale": args.scale, "date": origin["date"],
                               "commit": origin["commit"], **row} for row in result["rows"]])
        path = args.out / "kernels" / f"{exp.name}-{device.type}-{args.scale}.csv"
        atomic_write(path, table.to_csv(index=False))
        print(f"wrote {path}")
        same &= all(passed(row["verdict"]) for row in result["rows"]) and not result["failed"]
    return 0 if same else 1


if __name__ == "__main__":
    script_exit(main, "bench_kernels", "measure again")
