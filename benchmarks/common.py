"""What every benchmark shares: the machine's matmul limit, one row per workload, the table and `bench.json`.

A row compares the project's path with the stock path on identical work measured in the same run. `speedup` is
oriented so that above 1 is better, whatever the unit; `bound_share` is the project's share of the machine's limit
(the bf16 or fp32 matmul rate measured in the same run), where a FLOP count makes sense."""

from __future__ import annotations
import json, os, platform, time
from pathlib import Path

import torch


def timed(f, *args, **kw):
    "(result, seconds) of one call of `f`, synchronising CUDA around it."
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = f(*args, **kw)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def matmul_flops(dtype: torch.dtype, device: str = 'cpu', n: int = 1024, seconds: float = 2.0) -> float:
    "FLOP/s of an n×n by n×n matmul in `dtype` on `device`: the machine's limit that a dense model can approach."
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    for _ in range(3):
        a @ b  # warm-up: thread pool, kernels
    reps, t = 0, 0.0
    while t < seconds:
        _, dt = timed(lambda: a @ b)
        reps, t = reps + 1, t + dt
    return 2 * n**3 * reps / t


def model_flops_per_token(model) -> float:
    "2 × the parameters a token's forward pass multiplies by: every weight once, the input embedding excluded."
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    n = sum(p.numel() for p in model.parameters() if p is not emb)
    if head is not None and head.weight is emb:
        n += emb.numel()  # a tied head still costs its matmul
    return 2.0 * n


def row(
    workload: str,
    unit: str,
    stock: float,
    project: float,
    higher_is_better: bool = True,
    bound_share: float | None = None,
    **extra,
) -> dict:
    "One benchmark row; `speedup` > 1 means the project's path is better."
    speedup = project / stock if higher_is_better else stock / project
    return dict(
        workload=workload,
        unit=unit,
        stock=round(stock, 4),
        project=round(project, 4),
        speedup=round(speedup, 3),
        bound_share=None if bound_share is None else round(bound_share, 4),
        **extra,
    )


def machine() -> dict:
    "What the numbers were measured on."
    cuda = torch.cuda.is_available()
    return dict(
        platform=platform.platform(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        device=torch.cuda.get_device_name(0) if cuda else 'cpu',
    )


def print_table(rows: list[dict]):
    "The rows as a fixed-width table, the stock figure beside the project's."
    cols = ['workload', 'unit', 'stock', 'project', 'speedup', 'bound_share']
    cells = [[str(r.get(c, '')) if r.get(c) is not None else '-' for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print('  '.join(c.ljust(w) for c, w in zip(cols, widths)))
    print('  '.join('-' * w for w in widths))
    for x in cells:
        print('  '.join(v.ljust(w) for v, w in zip(x, widths)))


def write_bench(rows: list[dict], out: str | Path, limits: dict, name: str = 'bench.json') -> Path:
    "Write `{machine, limits, rows}` to `out/name`, merging with rows of other workloads already there."
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text())['rows'] if path.exists() else []
    names = {r['workload'] for r in rows}
    merged = [r for r in old if r['workload'] not in names] + rows
    path.write_text(json.dumps(dict(machine=machine(), limits=limits, rows=merged), indent=2) + '\n')
    return path
