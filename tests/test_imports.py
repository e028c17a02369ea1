"""The package's layering: no import cycle, and every module imports on its own.

The static check reads every `import` of adamrepro modules, at module level and inside
functions alike (a cycle hidden in a function is still a cycle), and fails on any cycle.
The dynamic check imports each module alone in a fresh interpreter (one subprocess that
forgets every adamrepro module before each import), so an import that only works after
another module was loaded first is caught.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from dynamo_import import dynamo_imported_from

from adamrepro.optim import OPTIMIZERS
from adamrepro.optim.dynamo_deferred import steps_with_torch

PACKAGE = Path(__file__).resolve().parent.parent / "adamrepro"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The adamrepro modules `path` imports (a `from package import name` of a submodule
    counts as importing the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if f"{node.module}.{a.name}" in known}
    return found


def test_no_import_cycle():
    found = modules()
    graph = {name: imports_of(path, set(found)) - {name} for name, path in found.items()}
    # a package's __init__ imports its submodules; a submodule importing its own package
    # (`from adamrepro.optim import X` inside adamrepro/optim/) would close a cycle, and so
    # would any longer loop: search for one
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)


def test_every_module_imports_alone():
    # __main__ is `python -m adamrepro`: importing it runs the command line
    names = sorted(name for name in modules() if not name.endswith("__main__"))
    script = (
        "import importlib, sys, traceback\n"
        f"failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'adamrepro']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout
    assert len(names) > 40  # the whole package was tried


def test_a_wheel_carries_the_bundled_configs_and_the_package_finds_them(tmp_path):
    """`pip install adamrepro` (no checkout beside it) still runs the bundled experiments by
    name: the wheel carries configs/*.yaml as data files (pyproject), installed under
    <prefix>/share/adamrepro/configs, which `bundled_config_dir` finds when no `configs/`
    lies beside the package; a checkout's own folder wins where there is one."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10, which pyproject admits: tomli is tomllib's source
        import tomli as tomllib

    from adamrepro.config import bundled_config_dir

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    data_files = pyproject["tool"]["setuptools"]["data-files"]
    assert data_files == {"share/adamrepro/configs": ["configs/*.yaml"]}
    site, prefix = tmp_path / "site" / "adamrepro", tmp_path / "prefix"
    site.mkdir(parents=True)
    installed = prefix / "share" / "adamrepro" / "configs"
    installed.mkdir(parents=True)
    assert bundled_config_dir(site, prefix) == installed
    # pip install --prefix (or --user): the data files lie under site-packages' prefix, not
    # this interpreter's
    elsewhere = tmp_path / "pfx"
    package = elsewhere / "lib" / "python3.11" / "site-packages" / "adamrepro"
    package.mkdir(parents=True)
    (elsewhere / "share" / "adamrepro" / "configs").mkdir(parents=True)
    assert bundled_config_dir(package, tmp_path / "venv") == elsewhere / "share/adamrepro/configs"
    (site.parent / "configs").mkdir()
    assert bundled_config_dir(site, prefix) == site.parent / "configs"
    assert bundled_config_dir() == PACKAGE.parent / "configs"


def probed(probe: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`probe`, Python source, run in a fresh interpreter with `args` after it."""
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          env={**os.environ, **env})


def test_help_and_usage_mistakes_answer_without_importing_torch():
    """`adamrepro --help`, a subcommand's help and a mistyped flag answer in under a second:
    torch (3 s to import here) is imported by the commands that use it, not by the CLI."""
    probe = ("import sys\n"
             "from adamrepro.cli import main\n"
             "codes = [main(['--help']), main(['run', '--help']), main(['run', '--bogus'])]\n"
             "assert codes == [0, 0, 2], codes\n"
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    done = probed(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:]


def test_every_help_fits_a_terminal_of_80_columns_uncut():
    """rich's help boxes cut option names and words off at 80 columns (`--reference-pass…`,
    `training.checkpo…`), and click cuts a command's summary longer than its column to
    `...` in `adamrepro --help`."""
    from adamrepro.cli import app

    commands = ["--help"] + [f"{c.name} --help" for c in app.registered_commands]
    probe = ("import sys\nfrom adamrepro.cli import main\nsys.argv[0] = 'adamrepro'\n"
             "sys.exit(main(sys.argv[1].split()))\n")
    for command in commands:
        done = probed(probe, command, COLUMNS="80")
        assert done.returncode == 0 and done.stderr == "", (command, done.stderr)
        lines = done.stdout.splitlines()
        assert len(lines) > 3, (command, done.stdout)
        for line in lines:
            assert len(line) <= 80 and "…" not in line, (command, line)
            assert line.startswith("Usage:") or not line.endswith("..."), (command, line)


def test_windows_is_refused_in_one_line_before_anything_imports_fcntl():
    """On Windows, which has no fcntl (results folders are locked with it) and no fork, every
    command was an ImportError's traceback. Here Python is made to look like Windows so: its
    platform, and an `import fcntl` that fails."""
    probe = ("import sys\n"
             "sys.platform = 'win32'\n"
             "sys.modules['fcntl'] = None  # import fcntl: ImportError, as on Windows\n"
             "from adamrepro.entry import main\n"
             "sys.exit(main())\n")
    done = probed(probe, "run", "logreg_mnist")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("adamrepro: error: Windows is not supported")
    assert "WSL" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_a_run_that_compiles_nothing_never_imports_dynamo(tmp_path, data_dir):
    """torch's Optimizer imported torch._dynamo at its first `add_param_group` (as long to
    import as torch itself) in every command that built an optimizer. A run whose groups
    checkpoint (state_dict, load_state_dict) and train (zero_grad) imports it no more; once
    something does (torch.compile), each method is the dynamo-disabled one torch keeps."""
    config = Path(__file__).resolve().parent.parent / "configs" / "logreg_mnist.yaml"
    probe = ("import sys\n"
             "from adamrepro.cli import main\n"
             "argv = ['run', sys.argv[1], '--scale', 'smoke', '--quiet', '--data-dir',\n"
             "        sys.argv[2], '--out', sys.argv[3], '--time-budget', '0']\n"
             "assert main(argv) == 3 and main(argv[:-2]) == 0\n"
             "print('torch._dynamo' in sys.modules)\n"
             "import torch, torch._dynamo\n"
             "p = torch.nn.Parameter(torch.ones(2))\n"
             "optimizer = torch.optim.SGD([p], lr=0.1)\n"
             "optimizer.zero_grad()\n"
             "kept = getattr(torch.optim.Optimizer.zero_grad.__wrapped__, '__dynamo_disable')\n"
             "print(getattr(kept, '_torchdynamo_disable', False))\n")
    done = probed(probe, str(config), str(data_dir), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", "True"], done.stdout[-500:]
    assert (tmp_path / "out" / "logreg_mnist" / "curves.csv").exists()


def test_a_torch_optimizer_imports_dynamo_before_any_group_is_timed(tmp_path, data_dir):
    """torch.optim.SGD's step imports torch._dynamo at its first call (1.4 s here): the
    import happens while its method is resolved, before any group starts, so the first
    group's recorded seconds do not hold it."""
    race = yaml.safe_load((Path(__file__).parent / "configs" / "race.yaml").read_text())
    race["methods"] = {"sgd": race["methods"]["sgd"]}
    config = tmp_path / "race.yaml"
    config.write_text(yaml.safe_dump(race))
    code, frames = dynamo_imported_from(
        "run", str(config), "--scale", "smoke", "--out", str(tmp_path / "out"), "--data-dir",
        str(data_dir), "--quiet", "--workers", "1")
    assert code == 0 and frames, frames
    files = [frame.split("@", 1)[1] for frame in frames]
    assert any(file.endswith(os.path.join("optim", "resolve.py")) for file in files), frames
    assert not any(os.path.join("adamrepro", "runner") in file for file in files), frames


def test_only_optimizers_that_step_with_torch_import_dynamo_early():
    """An optimizer whose step is its own (ours, a user's) never needs dynamo: importing it
    for them would cost every command the 1.4 s dynamo_deferred.py saves."""
    sys.path.insert(0, str(Path(__file__).parent / "outside"))
    try:
        from my_optimizers import SignSGD
    finally:
        sys.path.pop(0)

    class Mine(torch.optim.Adam):  # a user's subclass: its step may call torch's
        def step(self, closure=None):
            return super().step(closure)

    assert steps_with_torch(torch.optim.SGD) and steps_with_torch(torch.optim.LBFGS)
    assert steps_with_torch(Mine)
    assert not steps_with_torch(SignSGD)
    assert not any(steps_with_torch(cls) for cls in OPTIMIZERS.values()), OPTIMIZERS


def test_a_command_ends_without_the_interpreter_s_last_collections():
    """The garbage collections of Python's shutdown walked every object torch and pandas
    made, 1.2 s of a smoke run's end on a 2-core CPU (7.5 s under a loaded test suite; 0.25
    s frozen): the objects are frozen when the command is over, after its files are written
    and its exit code decided."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print(gc.get_freeze_count(), flush=True))\n"
             "from adamrepro.entry import main\n"
             "sys.argv = ['adamrepro', 'list', 'optimizers']\n"
             "sys.exit(main())\n")
    done = probed(probe)
    assert done.returncode == 0, done.stderr
    assert "adam" in done.stdout and int(done.stdout.split()[-1]) > 100_000, done.stdout[-300:]
