"""What a command costs beside its training: start-up (imports) and the exit.

Each row is the median of `--repeat` fresh interpreters, timed from the outside:
- `import torch`, and `import torch._dynamo` on top of it (what building a
  torch.optim.Optimizer imported before adamrepro/optim/dynamo_deferred.py);
- the interpreter's exit after `import torch`, plain and with the objects frozen first
  (what adamrepro/entry.py does once a command is over);
- `adamrepro list optimizers`, and a smoke `adamrepro run` of logreg_mnist: the whole
  command, and the part after its last line of output (the exit).

    python scripts/bench_startup.py [--repeat 3] [--data-dir DIR]
"""

from __future__ import annotations

import adamrepro.script_start  # noqa: F401  (first: a Ctrl-C while the rest import is one line)

# isort: split

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adamrepro.cli.params import ScriptParser, check_counts, folder_argument
from adamrepro.errors import UserError, script_exit

REPO = Path(__file__).resolve().parent.parent


def timed(code: str) -> float:
    """The seconds `code` prints last (it times itself with time.perf_counter)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # torch is installed: the import cannot fail
    return float(done.stdout.split()[-1])


def wall(command: list[str]) -> tuple[float, float]:
    """(whole command, from its last line of output to its exit), in seconds."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        last = start
        for _ in job.stdout:
            last = time.perf_counter()
        job.wait()
        end = time.perf_counter()
        if job.returncode != 0:  # its own one line (no data, say), then which command
            errors.seek(0)
            said = (errors.read().strip().splitlines() or [""])[-1]
            raise SystemExit(f"bench_startup: error: {' '.join(command[1:])} exited "
                             f"{job.returncode}: {said}")  # one line, exit 1
    return end - start, end - last


def check_mnist(data_dir: Path | None) -> None:
    """The smoke run this times reads MNIST: found missing at the end, after the timings,
    it also tried the network from inside a benchmark. Each official file, gzipped or
    unpacked, is looked for here (their bytes the run checks)."""
    from adamrepro.data.download import default_data_dir
    from adamrepro.data.mnist import FILES

    folder = Path(data_dir or default_data_dir()) / "MNIST" / "raw"
    missing = [name for name in FILES
               if not (folder / name).is_file() and not (folder / name[:-3]).is_file()]
    if missing:
        raise UserError(f"the smoke run it times reads MNIST, and {folder} lacks "
                        f"{', '.join(missing)}; run 'adamrepro fetch mnist' (offline: "
                        f"scripts/offline_data.py) first, or pass --data-dir to where it is")


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=folder_argument,
                        help="the data folder of the smoke run (default: adamrepro's)")
    args = parser.parse_args(argv)
    try:
        check_counts({"--repeat": args.repeat})
        if args.data_dir is not None and not args.data_dir.is_dir():
            raise UserError(f"--data-dir {args.data_dir} is not a folder; pass the data "
                            f"folder of `adamrepro run`, or leave it out for its default")
        check_mnist(args.data_dir)
    except UserError as err:
        print(f"bench_startup: error: {err}", file=sys.stderr)
        return 2
    clock = "import time; t = time.perf_counter(); "
    rows = {
        "import torch": clock + "import torch; print(time.perf_counter() - t)",
        "import torch._dynamo after torch": (
            "import time, torch; t = time.perf_counter(); import torch._dynamo; "
            "print(time.perf_counter() - t)"),
    }
    print(f"bench_startup on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, median of "
          f"{args.repeat}; load average {os.getloadavg()[0]:.1f}")
    for label, code in rows.items():
        print(f"{label:46s} {statistics.median(timed(code) for _ in range(args.repeat)):6.2f} s")
    for label, code in {"exit after import torch": "import torch",
                        "exit after import torch, objects frozen":
                            "import gc, torch; gc.freeze()"}.items():
        probe = [sys.executable, "-c", code + "; print('imported', flush=True)"]
        after = statistics.median(wall(probe)[1] for _ in range(args.repeat))
        print(f"{label:46s} {after:6.2f} s")
    commands = {"adamrepro list optimizers": ["list", "optimizers"]}
    with tempfile.TemporaryDirectory() as out:
        smoke = ["run", str(REPO / "configs" / "logreg_mnist.yaml"), "--scale", "smoke",
                 "--quiet", "--out", out]
        if args.data_dir:
            smoke += ["--data-dir", str(args.data_dir)]
        commands["adamrepro run logreg_mnist --scale smoke"] = smoke
        for label, arguments in commands.items():
            times = []
            for _ in range(args.repeat):
                times.append(wall([sys.executable, "-m", "adamrepro", *arguments]))
                if "run" in arguments:  # each repeat trains again
                    shutil.rmtree(Path(out) / "logreg_mnist")
            whole = statistics.median(t[0] for t in times)
            end = statistics.median(t[1] for t in times)
            print(f"{label:46s} {whole:6.2f} s, of which the exit {end:.2f} s")
    return 0


if __name__ == "__main__":
    script_exit(main, "bench_startup", "measure again")
