"""Generation throughput of the bundled SmolLM2 on this machine: fp32 vs bf16, one prompt at a time vs batched.

Prints new tokens per second for each setting, measured side by side in one run, and the ratios.
Usage: .venv/bin/python benchmarks/generation_throughput.py [--prompts 16] [--tokens 48] [--batch 16]"""
import argparse, time
import torch
from synthbook.core import load_model, BUNDLED_MODEL, seed_everything
from synthbook.data import load_prompts
from synthbook.generate import TransformersBackend

def measure(dtype, batch_size, prompts, tokens):
    model, tok = load_model(BUNDLED_MODEL, dtype=dtype, device='cpu')
    be = TransformersBackend(model, tok, batch_size=batch_size, progress=False)
    be.generate(prompts[:2], max_new_tokens=4, temperature=0)  # warm-up
    be.reset_stats()
    be.generate(prompts, max_new_tokens=tokens, temperature=0)
    return be.throughput(), be.stats['new_tokens'], be.stats['seconds']

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--prompts', type=int, default=16); ap.add_argument('--tokens', type=int, default=48)
    ap.add_argument('--batch', type=int, default=16)
    a = ap.parse_args()
    seed_everything(0)
    prompts = [r['prompt'] for r in load_prompts(n=a.prompts, seed=0)]
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {a.prompts} prompts x {a.tokens} new tokens, greedy')
    res = {}
    for dtype in ('float32', 'bfloat16'):
        for bs in (1, a.batch):
            tps, n, s = measure(dtype, bs, prompts, a.tokens)
            res[dtype, bs] = tps
            print(f'{dtype:9s} batch {bs:3d}: {tps:7.1f} tok/s ({n} tokens in {s:.1f} s)')
    print(f'bf16 / fp32 at batch {a.batch}: {res["bfloat16", a.batch] / res["float32", a.batch]:.2f}x')
    print(f'batch {a.batch} / batch 1 in bf16: {res["bfloat16", a.batch] / res["bfloat16", 1]:.2f}x')
    print(f'bf16 batch {a.batch} / fp32 batch 1: {res["bfloat16", a.batch] / res["float32", 1]:.2f}x')
