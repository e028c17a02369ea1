"""Training: what to run (plan.py: groups of runs, their ids), one group as one batched
computation (group.py), the sweep over groups and where it stores them (sweep.py), where
groups run (executors.py: this machine, worker processes, Ray), checkpoints and the time
budget (checkpoint.py), a SIGTERM's stop at the checkpoints (stopping.py), the grid-edge
extension (extend.py), float32 precision modes (precision.py) and training only another
folder's selected points (only_selected.py)."""
