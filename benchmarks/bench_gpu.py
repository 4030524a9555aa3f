"""The GPU comparisons, offline on one CUDA GPU in under 10 minutes: QLoRA vs bf16 LoRA DPO, vLLM vs transformers sampling.

Rows, each the project's path beside the stock one on identical work in the same run (`benchmarks/common.py`):
- `dpo-qlora-vs-lora-bundled`: TRL DPO with LoRA r16 on every linear layer of the bundled SmolLM2-135M; peak CUDA
  memory of bf16 LoRA (stock: AdamW, no gradient checkpointing) vs QLoRA (project: NF4 base, paged AdamW, gradient
  checkpointing), with both variants' seconds per pair and training tokens/s beside it.
- `dpo-qlora-vs-lora-1.5b-random`: the same on a model of Qwen2.5-1.5B's shape with random weights, built from a config
  and saved in a temporary folder with the bundled tokenizer, so nothing is downloaded (`--quick`: 2 of its 28 layers,
  row `dpo-qlora-vs-lora-1.5b-random-2layers`).
- `sampling-loop-vs-transformers-cuda`: synthbook's decode loop (`LoopBackend`, `backend: auto` without vLLM) vs batched
  `model.generate` on the bundled model, same prompts, batch and sampling settings.
- `sampling-vllm-vs-transformers`: new tokens/s of the bundled model sampling 4 responses to each of 64 prompts
  (temperature 0.7, top-p 0.95, 128 new tokens) with vLLM (project: the backend synthbook picks on CUDA) vs batched
  `model.generate` (stock). Left out, and listed under `skipped` in bench.json, where vllm is not installed.

The limits are the bf16 and fp32 4096² matmul rates measured in the same run; `bound_share` is the project's achieved
FLOP/s over the bf16 rate. Writes `<out>/bench.json`. Exits with code 2 and one line where no CUDA GPU is visible, and
with code 1 after writing bench.json (the failure listed under `failed`) where a workload failed.

Usage: .venv/bin/python benchmarks/bench_gpu.py [--out runs/bench-gpu] [--quick]"""

from __future__ import annotations
import argparse, gc, importlib.util, json, sys, tempfile, time, traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import timed, matmul_flops, model_flops_per_token, row, print_table, write_bench

import torch

# Qwen2.5-1.5B's shape (its config.json); the weights are random, so no download is needed
QWEN25_1_5B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    rms_norm_eps=1e-6,
    rope_parameters=dict(rope_type='default', rope_theta=1e6),
)

SIZES = dict(
    full=dict(quick=False, layers=28, pairs=64, batch=8, steps=6, prompts=64, n=4, new_tokens=128),
    quick=dict(quick=True, layers=2, pairs=16, batch=4, steps=3, prompts=16, n=4, new_tokens=32),
)

SAMPLING = dict(temperature=0.7, top_p=0.95, seed=0)
LORA = dict(r=16, alpha=32)  # add_lora's default target: all linear layers

# Training FLOPs per token ≈ 3 × the forward pass's. The usual 3× is forward + a backward twice as costly; in LoRA DPO
# the frozen weights need no weight gradients, so the backward costs about one forward, and the reference policy's
# forward pass (adapters off) adds the third. Gradient checkpointing's recomputation is not counted: it is no useful work.
TRAIN_FLOPS_FACTOR = 3


def free():
    "Give freed CUDA memory back, so the next variant's peak starts from an empty device."
    gc.collect()
    torch.cuda.empty_cache()


def flops_per_token(folder) -> float:
    "`model_flops_per_token` of the model in `folder`, counted on the meta device (a 4-bit model packs two weights a byte)."
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device('meta'):
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return model_flops_per_token(m)


def random_model_dir(dest: Path, layers: int) -> Path:
    "A bf16 model of Qwen2.5-1.5B's shape (`layers` of its 28) with random weights and the bundled tokenizer, saved to `dest`."
    from transformers import AutoModelForCausalLM, Qwen2Config
    from synthbook.core import load_tokenizer, BUNDLED_MODEL

    tok = load_tokenizer(BUNDLED_MODEL)  # 49k ids: every id it makes is a row of the 152k embedding
    cfg = Qwen2Config(
        **{**QWEN25_1_5B, 'num_hidden_layers': layers},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device('cuda'):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)  # random init on the GPU: seconds
    m.save_pretrained(dest)
    tok.save_pretrained(dest)
    del m
    free()
    return dest


TOPICS = [
    'watering a cactus',
    'keeping a sourdough starter alive',
    'learning to juggle three balls',
    'oiling a bike chain',
    'planning a week of lunches',
    'writing a cover letter',
    'tuning a guitar by ear',
    'cleaning a cast-iron pan',
    'training a puppy to sit',
    'saving for a holiday',
    'starting to run in winter',
    'repotting a fern',
    'reading more books',
    'fixing a squeaky door',
    'learning basic knots',
    'making cold brew coffee',
]
ASKS = [
    'How do I get started with {}?',
    'What mistakes should I avoid when {}?',
    'Can you give me a plan for {}?',
    'Explain {} to a complete beginner.',
]


def dpo_pairs(n: int) -> list[dict]:
    "`n` made-up preference pairs in conversational format: a specific, structured answer beats a vague, dismissive one."
    out = []
    for i in range(n):
        topic, ask = TOPICS[i % len(TOPICS)], ASKS[(i // len(TOPICS)) % len(ASKS)]
        chosen = (
            f"Good question. Here is a simple way to approach {topic}. First, gather what you need and set aside "
            f"twenty minutes without distractions. Second, start small: do the easiest part of {topic} once, slowly, "
            f"and notice what felt awkward. Third, repeat it a few times over the next week, changing one thing at "
            f"a time so you can tell what helped. A common mistake is doing too much at once, so keep each session "
            f"short. Finally, write down what worked; after a week you will have your own checklist for {topic}."
        )
        rejected = f"Just look it up online, {topic} is not that hard and everyone figures it out eventually."
        out.append(
            dict(
                prompt=[{'role': 'user', 'content': ask.format(topic)}],
                chosen=[{'role': 'assistant', 'content': chosen}],
                rejected=[{'role': 'assistant', 'content': rejected}],
            )
        )
    return out


def dpo_variant(folder: str, qlora: bool, pairs: list[dict], batch: int, steps: int, workdir: Path) -> dict:
    "Train `steps` DPO steps of `batch` pairs with QLoRA or bf16 LoRA; peak CUDA MB, seconds per pair and tokens/s after step 1."
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer
    from synthbook.core import load_model, add_lora

    class StepTimer(TrainerCallback):
        "Seconds of each optimizer step (forward, backward and update of one batch), synchronised with the GPU."

        def __init__(self):
            self.seconds = []

        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.t0)

    free()
    torch.cuda.reset_peak_memory_stats()  # the peak covers loading, quantizing and training
    model, tok = load_model(folder, dtype='bfloat16', device='cuda', load_in_4bit=qlora)
    torch.manual_seed(0)  # LoRA's A matrices are random
    model = add_lora(model, **LORA)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # option names as in TRL 1.16's DPOConfig; its defaults turn gradient checkpointing and bf16 on, so both are explicit
    args = DPOConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=2e-4,
        beta=0.1,
        loss_type=['sigmoid'],
        max_length=512,
        bf16=True,
        optim='paged_adamw_32bit' if qlora else 'adamw_torch',
        gradient_checkpointing=qlora,
        logging_steps=1,
        save_strategy='no',
        report_to='none',
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tok, callbacks=[timer]
    )
    trainer.train()
    peak_mb = torch.cuda.max_memory_allocated() / 2**20
    # TRL logs `num_tokens`, the running count of non-pad tokens of the chosen and rejected sequences trained on
    seen = {h['step']: h['num_tokens'] for h in trainer.state.log_history if 'num_tokens' in h and 'step' in h}
    secs = sum(timer.seconds[1:])  # step 1 is the warm-up: kernels, allocator, paged optimizer state
    tokens = seen[steps] - seen[1] if steps in seen and 1 in seen else None
    trainer.accelerator.free_memory()
    del trainer, model
    free()
    return dict(
        peak_mb=peak_mb,
        s_per_pair=secs / (batch * (len(timer.seconds) - 1)),
        tokens_per_s=None if tokens is None else tokens / secs,
        trainable=trainable,
    )


def dpo_row(name: str, folder: str, sz: dict, bf16_flops: float, workdir: Path) -> dict:
    "QLoRA (project) vs bf16 LoRA (stock) DPO on the model in `folder`, as one row of peak CUDA memory."
    pairs = dpo_pairs(sz['pairs'])
    lora = dpo_variant(folder, False, pairs, sz['batch'], sz['steps'], workdir / f'{name}-lora')
    qlora = dpo_variant(folder, True, pairs, sz['batch'], sz['steps'], workdir / f'{name}-qlora')
    fpt = flops_per_token(folder)
    share = lambda v: None if v['tokens_per_s'] is None else v['tokens_per_s'] * TRAIN_FLOPS_FACTOR * fpt / bf16_flops
    r3 = lambda x: None if x is None else round(x, 3)
    # the paged optimizer's state lives in CUDA unified memory, outside torch's allocator: QLoRA's peak leaves out
    # its 8 bytes per trainable parameter (`trainable_params`), which bf16 LoRA's AdamW peak includes
    return row(
        f'dpo-qlora-vs-lora-{name}',
        'peak CUDA MB',
        lora['peak_mb'],
        qlora['peak_mb'],
        higher_is_better=False,
        bound_share=share(qlora),
        lora_s_per_pair=r3(lora['s_per_pair']),
        qlora_s_per_pair=r3(qlora['s_per_pair']),
        lora_tokens_per_s=r3(lora['tokens_per_s']),
        qlora_tokens_per_s=r3(qlora['tokens_per_s']),
        lora_bound_share=r3(share(lora)),
        trainable_params=qlora['trainable'],
        flops_per_token_train=TRAIN_FLOPS_FACTOR * fpt,
        pairs_per_step=sz['batch'],
        steps=sz['steps'],
        timed_steps=sz['steps'] - 1,
        lora_r=LORA['r'],
        quick=sz['quick'],
    )


def sampling_row(sz: dict, bf16_flops: float) -> dict:
    "vLLM (project) vs `model.generate` (stock) new tokens/s on the bundled model, same prompts and sampling settings."
    from synthbook.core import load_model, resolve_model, BUNDLED_MODEL
    from synthbook.data import load_prompts
    from synthbook.generate import TransformersBackend, VLLMBackend

    prompts = load_prompts(n=sz['prompts'], seed=0)
    gen = dict(n=sz['n'], max_new_tokens=sz['new_tokens'], **SAMPLING)
    warm = dict(n=sz['n'], max_new_tokens=8, **SAMPLING)

    model, tok = load_model(BUNDLED_MODEL, dtype='bfloat16', device='cuda')
    fpt = model_flops_per_token(model)
    hf = TransformersBackend(model, tok, batch_size=len(prompts), progress=False)  # every prompt in one generate call
    hf.generate(prompts[:4], **warm)
    hf.reset_stats()
    _, hf_secs = timed(hf.generate, prompts, **gen)
    hf_stats = dict(hf.stats)
    del hf, model
    free()

    # last in the run: vLLM keeps its memory (half the GPU) until the process ends
    vl = VLLMBackend(
        resolve_model(BUNDLED_MODEL),
        dtype='bfloat16',
        tensor_parallel_size=1,
        gpu_memory_utilization=0.5,
        progress=False,
        enforce_eager=False,
        seed=0,
    )
    vl.generate(prompts[:4], **warm)
    vl.reset_stats()
    _, vl_secs = timed(vl.generate, prompts, **gen)
    vl_stats = dict(vl.stats)

    hf_tps, vl_tps = hf_stats['new_tokens'] / hf_secs, vl_stats['new_tokens'] / vl_secs
    # sampling is forward passes only: achieved FLOP/s = new tokens/s × forward FLOPs per token (prefill left out)
    return row(
        'sampling-vllm-vs-transformers',
        'new tokens/s',
        hf_tps,
        vl_tps,
        bound_share=vl_tps * fpt / bf16_flops,
        prompts=len(prompts),
        n=sz['n'],
        max_new_tokens=sz['new_tokens'],
        **{k: v for k, v in SAMPLING.items() if k != 'seed'},
        stock_new_tokens=hf_stats['new_tokens'],
        project_new_tokens=vl_stats['new_tokens'],
        stock_seconds=round(hf_secs, 3),
        project_seconds=round(vl_secs, 3),
        stock_bound_share=round(hf_tps * fpt / bf16_flops, 4),
        quick=sz['quick'],
    )


def loop_row(sz: dict, bf16_flops: float) -> dict:
    "synthbook's decode loop (what `backend: auto` picks on CUDA without vLLM) vs `model.generate`, new tokens/s."
    from synthbook.core import load_model, BUNDLED_MODEL
    from synthbook.data import load_prompts
    from synthbook.generate import LoopBackend, TransformersBackend

    prompts = load_prompts(n=sz['prompts'], seed=0)
    model, tok = load_model(BUNDLED_MODEL, dtype='bfloat16', device='cuda')
    fpt, tps = model_flops_per_token(model), {}
    for be in (
        TransformersBackend(model, tok, batch_size=16, progress=False),
        LoopBackend(model, tok, batch_size=16, progress=False),
    ):
        be.generate(prompts[:4], n=sz['n'], max_new_tokens=8, **SAMPLING)
        be.reset_stats()
        be.generate(prompts, n=sz['n'], max_new_tokens=sz['new_tokens'], **SAMPLING)
        tps[be.name] = be.throughput()
    del model
    free()
    return row(
        'sampling-loop-vs-transformers-cuda',
        'new tokens/s',
        tps['transformers'],
        tps['loop'],
        bound_share=tps['loop'] * fpt / bf16_flops,
        prompts=len(prompts),
        n=sz['n'],
        batch='16 prompts',
        max_new_tokens=sz['new_tokens'],
        quick=sz['quick'],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='runs/bench-gpu', help='folder for bench.json')
    ap.add_argument(
        '--quick', action='store_true', help='smaller sizes: a 2-layer 1.5B shape, fewer steps, prompts and tokens'
    )
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print(
            'bench_gpu: no CUDA GPU visible (torch.cuda.is_available() is False); run it on a machine with an NVIDIA GPU '
            'and a CUDA build of torch',
            file=sys.stderr,
        )
        sys.exit(2)
    from synthbook.core import resolve_model, seed_everything, BUNDLED_MODEL

    sz = SIZES['quick' if a.quick else 'full']
    seed_everything(0)
    t0 = time.perf_counter()
    print(
        f'bench_gpu on {torch.cuda.get_device_name(0)}, torch {torch.__version__}{" (quick)" if a.quick else ""}',
        flush=True,
    )
    # the machine's limits, measured first while the GPU is idle
    limits = {
        'bf16 matmul FLOP/s': matmul_flops(torch.bfloat16, 'cuda', n=4096),
        'fp32 matmul FLOP/s': matmul_flops(torch.float32, 'cuda', n=4096),
    }
    print(', '.join(f'{k}: {v / 1e12:.1f} T' for k, v in limits.items()), flush=True)
    bf16 = limits['bf16 matmul FLOP/s']

    rows, skipped, failed = [], [], []

    def attempt(workload, f):
        print(f'[{time.perf_counter() - t0:5.0f} s] {workload}', flush=True)
        try:
            rows.append(f())
        except Exception as e:
            traceback.print_exc()
            msg = str(e).strip().splitlines()
            failed.append(f"{workload}: failed: {type(e).__name__}: {msg[0] if msg else ''}")
        free()  # after the except block, whose traceback holds the failed workload's model

    with tempfile.TemporaryDirectory(prefix='synthbook-bench-gpu-') as tmp:
        tmp = Path(tmp)
        attempt('dpo-qlora-vs-lora-bundled', lambda: dpo_row('bundled', resolve_model(BUNDLED_MODEL), sz, bf16, tmp))
        shape = '1.5b-random' + (f'-{sz["layers"]}layers' if sz['quick'] else '')
        attempt(
            f'dpo-qlora-vs-lora-{shape}',
            lambda: dpo_row(shape, str(random_model_dir(tmp / 'random-model', sz['layers'])), sz, bf16, tmp),
        )
        attempt('sampling-loop-vs-transformers-cuda', lambda: loop_row(sz, bf16))
        if importlib.util.find_spec('vllm') is None:
            print(
                'sampling-vllm-vs-transformers: skipped, vllm is not installed (pip install -e ".[vllm]")', flush=True
            )
            skipped.append('sampling-vllm-vs-transformers: vllm not installed')
        else:
            attempt('sampling-vllm-vs-transformers', lambda: sampling_row(sz, bf16))

    print()
    print_table(rows)
    for s in skipped + failed:
        print(s)
    path = write_bench(rows, a.out, limits)
    data = json.loads(path.read_text())
    data.update(skipped=skipped, failed=failed, quick=a.quick, seconds=round(time.perf_counter() - t0, 1))
    path.write_text(json.dumps(data, indent=2) + '\n')
    print(f'wrote {path} in {time.perf_counter() - t0:.0f} s')
    if failed:
        sys.exit(1)


if __name__ == '__main__':
    main()
