"""Training: what to run (plan.py: groups of runs, their ids), one group as one batched
computation (group.py), what a group measured pass by pass (history.py), the sweep over
groups and where it stores them (sweep.py), where groups run (executors.py: this machine,
worker processes, Ray), checkpoints and the time budget (checkpoint.py), the grid-edge
extension (extend.py), float32 precision modes (precision.py), training only another
folder's selected points (only_selected.py), what a command would train (preview.py:
run --dry-run) and a CPU's freed memory kept for the next step (host_memory.py). A
signal's stop at the checkpoints is ../stopping.py, shared with the CLI."""

