"""Where torch._dynamo is first imported by an adamrepro command, for the tests that check
it is imported before anything is timed (1.4 s on this project's 2-core CPU)."""

from __future__ import annotations

import subprocess
import sys

# an audit hook (Python's "import" event, raised as an import begins) keeps the stack of
# the first import of torch._dynamo: the function and file of each frame importing it
PROBE = """
import sys, traceback
seen = []
def hook(event, args):
    if event == "import" and args[0] == "torch._dynamo" and not seen:
        seen.append(traceback.extract_stack()[:-1])  # not the hook's own frame
sys.addaudithook(hook)
from adamrepro.cli import main
code = main(sys.argv[1:])
print(code, " ".join(f"{f.name}@{f.filename}" for f in seen[0]) if seen else "")
"""


def dynamo_imported_from(*argv: str) -> tuple[int, list[str]]:
    """`adamrepro *argv`'s exit code, and the frames (`function@file`, outermost first) that
    first imported torch._dynamo: none where nothing did."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    code, *frames = done.stdout.splitlines()[-1].split(" ")
    return int(code), [frame for frame in frames if frame]
