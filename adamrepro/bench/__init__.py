"""Speed of the batched runner against the straightforward loop (`adamrepro bench`).

`reference.py` is that loop, one run after another; `timing.py` times both on the same grid,
`same_curves.py` decides whether they trained the same curves, `flops.py` counts their FLOPs
and `machine.py` measures the machine; `kernels.py` times kernel switches on one group
(scripts/bench_kernels.py); `adamrepro/cli/bench.py` prints and stores the result.
"""
