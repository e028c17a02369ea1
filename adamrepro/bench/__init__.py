"""Speed of the batched runner against the straightforward loop (`adamrepro bench`).

`reference.py` is that loop, one run after another; `timing.py` times both on the same grid
and counts their FLOPs; `adamrepro/cli/bench.py` prints and stores the result.
"""
