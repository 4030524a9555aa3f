"""`make bench`: every fast path of the chain against the stock path, on identical work, in one run, on this machine.

Rows (see `common.py` for their fields; `speedup` > 1 means synthbook's path is better):
- `sampling-<T>`: new tokens/s of `LoopBackend` vs stock `model.generate` (`TransformersBackend`), same model in the
  dtype that `dtype: auto` picks on this machine (bf16 where it measured faster than fp32, as the chain runs it),
  prompts, batch, n, temperature 0.7, top-p 0.95 and T max new tokens;
- `greedy-64`: the same for greedy decoding, with the correctness guard: the share of sequences identical token for token
  to stock in fp32 (the same math, so it should be 1.0), the share in the chain's dtype, and the mean NLL of each side's
  greedy output under that model;
- `greedy-lora-64`: greedy decoding from a LoRA policy (r16 on all linear layers, a nonzero update), stock
  `model.generate` through peft's adapters vs `LoopBackend` on chapter 00's `plain_copy` (the adapter merged into an
  fp32 copy; a 16-bit model keeps its adapter), with the share of identical sequences and the loop through peft
  alone as the middle step;
- `judging`: seconds per 100 next-token verdict read-outs (both orders of 50 comparisons), chapter 03's
  `next_token_probs` vs a stock per-batch forward;
- `dpo`: seconds per training pair (trainer set-up included) and peak RSS of chapter 06's `dpo_args` at the smoke
  recipe's micro-batch (pairs grouped by length) under `training_kernels`, vs TRL's `DPOConfig` defaults, same pairs,
  model, LoRA r16 on all linear layers, learning rate and global batch; each side runs in its own process so the RSS is
  its own. The final-loss guard is the DPO loss over all pairs after training (untimed), since grouped batches put other
  pairs in the last step. A third run, TRL's defaults at the project's micro-batch and accumulation, is the control:
  with Adam at this learning rate a different summation order alone moves the loss by about 0.01;
- `judge-sft`: seconds per training row (trainer set-up and compilation included) of chapter 05's GenRM fine-tune
  (`train_judge_sft`, both orders of up to 24 sampled pairs whose responses differ, batch 8, one epoch at 2e-4) with
  `training_kernels` compiling the decoder layers vs the same kernels left eager, each side in its own process (the
  compiler's disk cache as the chain finds it after its first chapter). The guard is the SFT loss over all rows after
  training (untimed), which should be about the same on both sides;
- `chain-<stage>`: a smoke run's per-stage seconds from its `run.json` (`--run`), when there is one.

Usage: .venv/bin/python benchmarks/bench.py [--out runs/bench] [--run runs/smoke]
       [--only sampling,greedy,greedy-lora,judging,dpo,judge-sft]
"""

from __future__ import annotations
import argparse, copy, json, math, os, subprocess, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import matmul_flops, model_flops_per_token, print_table, row, timed, write_bench  # noqa: E402

from synthbook.core import BUNDLED_MODEL, add_lora, load_model, pick_dtype, plain_copy, seed_everything  # noqa: E402
from synthbook.data import load_prompts  # noqa: E402
from synthbook.generate import LoopBackend, TransformersBackend, as_messages  # noqa: E402

SAMPLING = dict(temperature=0.7, top_p=0.95)


def short_dtype(dtype: torch.dtype) -> str:
    "bf16 or fp32, as the limits are named."
    return {torch.bfloat16: 'bf16', torch.float32: 'fp32'}[dtype]


def prompts_for(n: int) -> list[str]:
    "The first `n` shipped general prompts, as the chain draws them."
    return [r['prompt'] for r in load_prompts(n=n, seed=0)]


def throughput(backend, prompts, **kw) -> tuple[float, list]:
    "(new tokens/s, outputs) of one `generate` call after a short warm-up."
    backend.generate(prompts[:2], max_new_tokens=4, temperature=0)
    backend.reset_stats()
    out = backend.generate(prompts, **kw)
    return backend.throughput(), out


def sampling_rows(
    model, tok, peak_flops: float, n_prompts: int = 16, n: int = 4, batch: int = 16
) -> tuple[list[dict], list]:
    "Sampled generation at 64 and 128 new tokens, stock vs loop, at equal batch; returns the rows and the 64-token samples."
    prompts, flops, rows, samples = prompts_for(n_prompts), model_flops_per_token(model), [], None
    for tokens in (64, 128):
        res = {}
        for be in (
            TransformersBackend(model, tok, batch, progress=False),
            LoopBackend(model, tok, batch, progress=False),
        ):
            res[be.name], out = throughput(be, prompts, n=n, max_new_tokens=tokens, seed=0, **SAMPLING)
            if be.name == 'loop' and tokens == 64:
                samples = out
        rows.append(
            row(
                f'sampling-{tokens}',
                'new tokens/s',
                res['transformers'],
                res['loop'],
                bound_share=res['loop'] * flops / peak_flops,
                stock_bound_share=round(res['transformers'] * flops / peak_flops, 4),
                prompts=n_prompts,
                n=n,
                batch=f'{batch} prompts x {n}',
                max_new_tokens=tokens,
            )
        )
    return rows, list(zip(prompts, samples))


def nll_of(model, tok, prompts, responses) -> float:
    "Mean per-token negative log-likelihood of `responses` under `model`."
    total, count = 0.0, 0
    with torch.inference_mode():
        for p, r in zip(prompts, responses):
            ids = tok.apply_chat_template(as_messages(p), add_generation_prompt=True, return_dict=True)['input_ids']
            resp = tok(r, add_special_tokens=False)['input_ids']
            if not resp:
                continue
            x = torch.tensor([ids + resp])
            logp = torch.log_softmax(model(input_ids=x).logits[0, len(ids) - 1 : -1].float(), -1)
            total -= logp.gather(-1, torch.tensor(resp)[:, None]).sum().item()
            count += len(resp)
    return total / max(count, 1)


def greedy_row(model, tok, peak_flops: float, n_prompts: int = 32, batch: int = 32, tokens: int = 64) -> dict:
    "Greedy decoding, stock vs loop, with the identity guard in fp32 and in the model's dtype, and the NLL of both outputs."
    prompts, flops, short = prompts_for(n_prompts), model_flops_per_token(model), short_dtype(model.dtype)
    kw = dict(max_new_tokens=tokens, temperature=0)
    stock_tps, stock_out = throughput(TransformersBackend(model, tok, batch, progress=False), prompts, **kw)
    loop_tps, loop_out = throughput(LoopBackend(model, tok, batch, progress=False), prompts, **kw)
    same = [a == b for a, b in zip(stock_out, loop_out)]
    same32 = same
    if model.dtype != torch.float32:
        m32, t32 = load_model(BUNDLED_MODEL, dtype='float32', device='cpu')
        same32 = [
            a == b
            for a, b in zip(
                TransformersBackend(m32, t32, batch, progress=False).generate(prompts, **kw),
                LoopBackend(m32, t32, batch, progress=False).generate(prompts, **kw),
            )
        ]
        del m32
    return row(
        'greedy-64',
        'new tokens/s',
        stock_tps,
        loop_tps,
        bound_share=loop_tps * flops / peak_flops,
        dtype=short,
        **{'identical_fp32': round(sum(same32) / len(same32), 3), f'identical_{short}': round(sum(same) / len(same), 3)},
        **{f'nll_stock_{short}': round(nll_of(model, tok, prompts, [o for [o] in stock_out]), 4)},
        **{f'nll_loop_{short}': round(nll_of(model, tok, prompts, [o for [o] in loop_out]), 4)},
        sequences=n_prompts,
    )


def greedy_lora_row(model, tok, peak_flops: float, n_prompts: int = 32, batch: int = 16, tokens: int = 64) -> dict:
    "Greedy decoding from a LoRA policy: stock `generate` through peft vs the loop on a merged `plain_copy`."
    seed_everything(0)
    policy = add_lora(copy.deepcopy(model))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if 'lora_B' in n:
                p.normal_(0, 0.02)  # a trained-looking update: B = 0 would make the adapter a no-op
    prompts, flops = prompts_for(n_prompts), model_flops_per_token(model)
    kw = dict(max_new_tokens=tokens, temperature=0)
    stock_tps, stock_out = throughput(TransformersBackend(policy, tok, batch, progress=False), prompts, **kw)
    peft_loop_tps, _ = throughput(LoopBackend(policy, tok, batch, progress=False), prompts, **kw)
    t0 = time.perf_counter()
    plain = plain_copy(policy)
    copy_seconds = time.perf_counter() - t0
    tps, out = throughput(LoopBackend(plain, tok, batch, progress=False), prompts, **kw)
    same = [a == b for a, b in zip(stock_out, out)]
    return row(
        'greedy-lora-64',
        'new tokens/s',
        stock_tps,
        tps,
        bound_share=tps * flops / peak_flops,
        merged=plain is not policy,
        loop_through_peft_tps=round(peft_loop_tps, 1),
        copy_seconds=round(copy_seconds, 2),
        identical=round(sum(same) / len(same), 3),
        sequences=n_prompts,
        batch=batch,
    )


def judging_row(model, tok, samples: list, n_items: int = 50, batch: int = 16) -> dict:
    "Seconds per 100 verdict read-outs, both orders of `n_items` comparisons: chapter 03 vs a stock per-batch forward."
    from synthbook.feedback import JUDGE_SYSTEM, JUDGE_TEMPLATE, VERDICT_PREFIX, next_token_probs

    items = [(p, rs[i], rs[i + 1]) for p, rs in samples for i in (0, 2)][:n_items]
    convs = [as_messages(JUDGE_TEMPLATE.format(question=p, a=a, b=b), JUDGE_SYSTEM) for p, a, b in items]
    convs += [as_messages(JUDGE_TEMPLATE.format(question=p, a=b, b=a), JUDGE_SYSTEM) for p, a, b in items]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) + VERDICT_PREFIX for c in convs]
    ab = [tok.encode(c, add_special_tokens=False)[0] for c in 'AB']

    def stock():
        tok.padding_side, out = 'left', []
        for s in range(0, len(texts), batch):
            enc = tok(texts[s : s + batch], return_tensors='pt', padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out.append(model(**enc).logits[:, -1, ab].float().softmax(-1))
        return torch.cat(out)

    next_token_probs(model, tok, convs[:2], VERDICT_PREFIX, ['A', 'B'])  # warm-up
    p_stock, t_stock = timed(stock)
    p_project, t_project = timed(next_token_probs, model, tok, convs, VERDICT_PREFIX, ['A', 'B'], batch)
    per100 = lambda t: t * 100 / len(texts)
    tokens = sum(len(tok(t, add_special_tokens=False)['input_ids']) for t in texts)
    return row(
        'judging',
        's per 100 judgments',
        per100(t_stock),
        per100(t_project),
        higher_is_better=False,
        judgments=len(texts),
        mean_tokens=round(tokens / len(texts)),
        max_abs_diff_p=round((p_stock - p_project).abs().max().item(), 4),
        same_verdict=round(((p_stock[:, 0] > 0.5) == (p_project[:, 0] > 0.5)).float().mean().item(), 3),
    )


def dpo_side(side: str, pairs_file: str) -> dict:
    ("One DPO run in this process: `stock` (DPOConfig defaults), `stock-micro` (the same at the project's micro-batch "
     "and accumulation, the control for the final loss) or `project` (chapter 06's `dpo_args`).")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    from synthbook.core import Config, load_recipe, training_kernels
    from synthbook.dpo import PeakMemory, dpo_args, dpo_trainer, policy_model

    pairs = json.loads(Path(pairs_file).read_text())
    # the project side at the smoke recipe's micro-batch: 2 pairs of similar length per forward
    device_batch = load_recipe(Path(__file__).parent.parent / 'recipes' / 'smoke.yaml').device_batch_size
    cfg = Config(
        model=BUNDLED_MODEL, device='cpu', lora_r=16, lora_alpha=32, dpo_learning_rate=2e-4, global_batch_size=8,
        device_batch_size=device_batch,
    )
    model, tok = policy_model(cfg)  # weights in the dtype `auto` picks, fp32 LoRA r16 on all linear layers, seeded
    out = tempfile.mkdtemp()
    project_args = dpo_args(cfg, Path(out), model, progress=False)
    micro = side == 'stock-micro'
    if side.startswith('stock'):  # TRL's defaults (gradient checkpointing, the reference recomputed every step)
        args = DPOConfig(
            output_dir=out,
            learning_rate=cfg.dpo_learning_rate,
            per_device_train_batch_size=project_args.per_device_train_batch_size if micro else cfg.global_batch_size,
            gradient_accumulation_steps=project_args.gradient_accumulation_steps if micro else 1,
            num_train_epochs=cfg.dpo_epochs,
            logging_steps=1,
            report_to='none',
            save_strategy='no',
            use_cpu=True,
            seed=0,
            data_seed=0,
            disable_tqdm=True,
        )
    else:
        args = project_args
    rows = [
        {
            'prompt': [{'role': 'user', 'content': p}],
            'chosen': [{'role': 'assistant', 'content': c}],
            'rejected': [{'role': 'assistant', 'content': r}],
        }
        for p, c, r in pairs
    ]
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        if side.startswith('stock'):
            trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
            trainer.train()
        else:  # as chapter 06's `train_policy` runs it
            with training_kernels(model, compile_layers=args.precompute_ref_log_probs):  # as chapter 06 trains DPO
                trainer = dpo_trainer(model, tok, [dict(prompt=p, chosen=c, rejected=r) for p, c, r in pairs], args)
                trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h and 'rewards/margins' in h]
    # the DPO loss over every training pair after the same steps, untimed: each side's last step saw other pairs
    mean_loss = trainer.evaluate(eval_dataset=Dataset.from_list(rows))['eval_loss']
    return dict(
        seconds_per_pair=seconds / len(rows),
        peak_rss_mb=mem.rss_mb,
        first_loss=losses[0],
        last_loss=losses[-1],
        mean_loss_after=mean_loss,
        steps=trainer.state.global_step,
        gradient_checkpointing=args.gradient_checkpointing,
        precompute_ref_log_probs=args.precompute_ref_log_probs,
        batch=f'{args.per_device_train_batch_size} x {args.gradient_accumulation_steps}',
    )


def dpo_row(samples: list, n_pairs: int = 32) -> dict:
    "Chapter 06's DPO vs TRL's defaults, each in a fresh process, on the same pairs."
    pairs = [(p, rs[i], rs[i + 1]) for p, rs in samples for i in (0, 2) if rs[i] != rs[i + 1]][:n_pairs]
    pairs_file = Path(tempfile.mkdtemp()) / 'pairs.json'
    pairs_file.write_text(json.dumps(pairs))
    res = {}
    for side in ('stock', 'stock-micro', 'project'):
        r = subprocess.run(
            [sys.executable, __file__, '--dpo-side', side, '--pairs', str(pairs_file)], capture_output=True, text=True
        )
        if r.returncode:
            raise RuntimeError(f"DPO {side} run failed: {r.stderr.strip().splitlines()[-1]}")
        res[side] = json.loads(r.stdout.strip().splitlines()[-1])
    s, c, p = res['stock'], res['stock-micro'], res['project']
    return row(
        'dpo',
        's per training pair',
        s['seconds_per_pair'],
        p['seconds_per_pair'],
        higher_is_better=False,
        pairs=len(pairs),
        peak_rss_mb_stock=round(s['peak_rss_mb']),
        peak_rss_mb_project=round(p['peak_rss_mb']),
        first_loss_stock=round(s['first_loss'], 4),
        first_loss_project=round(p['first_loss'], 4),
        last_loss_stock=round(s['last_loss'], 4),
        last_loss_project=round(p['last_loss'], 4),
        # the same stock math at the project's micro-batching: how far apart last losses land from summation order alone
        last_loss_stock_micro=round(c['last_loss'], 4),
        mean_loss_after_stock=round(s['mean_loss_after'], 4),
        mean_loss_after_stock_micro=round(c['mean_loss_after'], 4),
        mean_loss_after_project=round(p['mean_loss_after'], 4),
        s_per_pair_stock_micro=round(c['seconds_per_pair'], 3),
        steps=p['steps'],
        batch_stock=s['batch'],
        batch_project=p['batch'],
        stock_settings=f"gradient_checkpointing={s['gradient_checkpointing']}, precompute_ref={s['precompute_ref_log_probs']}",
        project_settings=f"gradient_checkpointing={p['gradient_checkpointing']}, precompute_ref={p['precompute_ref_log_probs']}",
    )


def judge_sft_side(side: str, pairs_file: str) -> dict:
    "One GenRM fine-tune in this process, with the decoder layers `compiled` or left `eager`."
    from datasets import Dataset
    import synthbook.core as core
    import synthbook.genrm as genrm

    if side == 'eager':  # `training_kernels` compiles only where it finds a C++ compiler: here it finds none
        core.cpu_compiler = lambda: False
    pairs = [dict(prompt=p, chosen=c, rejected=r) for p, c, r in json.loads(Path(pairs_file).read_text())]
    rows = genrm.genrm_rows(pairs, genrm.COMPACT_JUDGE_SYSTEM)
    model, tok = genrm.fresh_judge(BUNDLED_MODEL, device='cpu')
    t0 = time.perf_counter()
    trainer = genrm.train_judge_sft(model, tok, rows, Path(tempfile.mkdtemp()), 1, 2e-4, 8, 0, progress=False)
    seconds = time.perf_counter() - t0
    loss_after = trainer.evaluate(eval_dataset=Dataset.from_list(rows))['eval_loss']  # the same scoring on both sides
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    return dict(seconds_per_row=seconds / len(rows), rows=len(rows), first_loss=losses[0], loss_after=loss_after)


def judge_sft_row(samples: list, n_pairs: int = 24) -> dict:
    "Chapter 05's GenRM fine-tune with compiled decoder layers vs eager ones, each in a fresh process, on the same rows."
    pairs = [(p, rs[0], rs[1]) for p, rs in samples if rs[0] != rs[1]][:n_pairs]
    pairs_file = Path(tempfile.mkdtemp()) / 'pairs.json'
    pairs_file.write_text(json.dumps(pairs))
    res = {}
    for side in ('eager', 'compiled'):
        r = subprocess.run(
            [sys.executable, __file__, '--judge-sft-side', side, '--pairs', str(pairs_file)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise RuntimeError(f"judge SFT {side} run failed: {r.stderr.strip().splitlines()[-1]}")
        res[side] = json.loads(r.stdout.strip().splitlines()[-1])
    e, c = res['eager'], res['compiled']
    return row(
        'judge-sft',
        's per training row',
        e['seconds_per_row'],
        c['seconds_per_row'],
        higher_is_better=False,
        rows=c['rows'],
        first_loss_eager=round(e['first_loss'], 4),
        first_loss_compiled=round(c['first_loss'], 4),
        loss_after_eager=round(e['loss_after'], 4),
        loss_after_compiled=round(c['loss_after'], 4),
    )


def chain_rows(run_dir: Path) -> list[dict]:
    "Per-stage seconds of a finished run, from its run.json."
    stages = json.loads((run_dir / 'run.json').read_text()).get('stages', {})
    return [
        dict(
            workload=f'chain-{s}',
            unit='s',
            stock=None,
            project=v['seconds'],
            speedup=None,
            bound_share=None,
            run=str(run_dir),
        )
        for s, v in stages.items()
        if v.get('seconds') is not None and not v.get('skipped')
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='runs/bench')
    ap.add_argument('--run', default='runs/smoke', help='a finished run whose run.json gives the chain-<stage> rows')
    ap.add_argument('--only', default='sampling,greedy,greedy-lora,judging,dpo,judge-sft')
    ap.add_argument('--dpo-side'), ap.add_argument('--judge-sft-side'), ap.add_argument('--pairs')
    a = ap.parse_args()
    if a.dpo_side:  # a child process of dpo_row
        print(json.dumps(dpo_side(a.dpo_side, a.pairs)))
        return
    if a.judge_sft_side:  # a child process of judge_sft_row
        print(json.dumps(judge_sft_side(a.judge_sft_side, a.pairs)))
        return
    seed_everything(0)
    only, t0 = set(a.only.split(',')), time.perf_counter()
    limits = {'bf16 matmul FLOP/s': matmul_flops(torch.bfloat16), 'fp32 matmul FLOP/s': matmul_flops(torch.float32)}
    print(
        f"limits: bf16 matmul {limits['bf16 matmul FLOP/s'] / 1e9:.0f} GFLOP/s, fp32 {limits['fp32 matmul FLOP/s'] / 1e9:.0f} "
        f"GFLOP/s, {torch.get_num_threads()} threads"
    )
    dtype = pick_dtype('auto', 'cpu')  # what the chain runs in on this machine
    print(f"dtype 'auto' is {dtype} here")
    model, tok = load_model(BUNDLED_MODEL, dtype=str(dtype).removeprefix('torch.'), device='cpu')
    peak = limits[f'{short_dtype(dtype)} matmul FLOP/s']
    rows, samples = [], None
    if only & {'sampling', 'judging', 'dpo', 'judge-sft'}:
        sampled, samples = sampling_rows(model, tok, peak)
        if 'sampling' in only:
            rows += sampled
    if 'greedy' in only:
        rows.append(greedy_row(model, tok, peak))
    if 'greedy-lora' in only:
        rows.append(greedy_lora_row(model, tok, peak))
    if 'judging' in only:
        rows.append(judging_row(model, tok, samples))
    del model
    if 'dpo' in only:
        rows.append(dpo_row(samples))
    if 'judge-sft' in only:
        rows.append(judge_sft_row(samples))
    if Path(a.run, 'run.json').exists():
        rows += chain_rows(Path(a.run))
    path = write_bench(rows, a.out, limits)
    print_table(rows)
    for r in rows:
        extra = {
            k: v for k, v in r.items() if k not in ('workload', 'unit', 'stock', 'project', 'speedup', 'bound_share')
        }
        if extra:
            print(f"{r['workload']}: {extra}")
    print(f'wrote {path} in {time.perf_counter() - t0:.0f} s')


if __name__ == '__main__':
    main()
