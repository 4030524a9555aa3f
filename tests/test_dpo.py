"Chapter 06: DPO with LoRA and QLoRA, on the tiny random model."
import math
from unittest import mock
import pytest, torch
from synthbook.core import TINY_MODEL, Config, ModelError, batch_plan
from synthbook.data import DataError
from synthbook.dpo import (PeakMemory, adapters_at_zero, dpo_args, dpo_loss, dpo_pairs, dpo_trainer, load_policy,
                           minimal_pairs, policy_model, save_policy, trainer_global_batch,
                           training_curve)
from synthbook.feedback import make_pair, principle_of

PAIRS = [make_pair({'prompt': f'Name a colour, {i}.'}, 'Blue is a calm colour.', 'I do not know.', 'almost', split='train')
         for i in range(4)]

def tiny(**kw): return Config(**{'model': TINY_MODEL, 'device': 'cpu', 'dtype': 'float32', 'seed': 0, **kw})

def test_batch_plan_keeps_the_global_batch_or_says_why_not():
    assert batch_plan(64, 8, 8) == {'per device': 8, 'accumulation': 1, 'processes': 8, 'global': 64}
    assert batch_plan(64, 4, 2) == {'per device': 4, 'accumulation': 8, 'processes': 2, 'global': 64}
    assert batch_plan(4, 8, 1)['per device'] == 4
    with pytest.raises(ValueError, match='global_batch_size=12 is not a multiple of device batch 8 × 1'): batch_plan(12, 8, 1)
    with pytest.raises(ValueError, match='not a multiple'): batch_plan(8, 4, 3)
    with pytest.raises(ValueError, match='at least 1'): batch_plan(8, 0, 1)

def test_hand_written_loss_matches_the_algebra():
    z = torch.zeros(1)
    loss, rw, rl = dpo_loss(z, z, z, z)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6) and rw.item() == rl.item() == 0
    loss, rw, rl = dpo_loss(torch.tensor([-1.]), torch.tensor([-30.]), torch.tensor([-2.]), torch.tensor([-10.]), beta=0.5)
    assert math.isclose(rw.item(), 0.5) and math.isclose(rl.item(), -10.0)
    assert math.isclose(loss.item(), -torch.nn.functional.logsigmoid(torch.tensor(10.5)).item(), rel_tol=1e-6)

def test_dpo_pairs_filters_counts_and_fails_by_name():
    from synthbook.core import load_tokenizer
    tok = load_tokenizer(TINY_MODEL)
    mixed = PAIRS + [make_pair({'prompt': 'Long?'}, 'word ' * 300, 'no', 'dpf', split='train')]
    kept, too_long = dpo_pairs(mixed, ['almost', 'dpf'], tok, max_length=100)
    assert len(kept) == 4 and too_long == 1
    assert len(dpo_pairs(mixed, ['almost'], tok, n=2)[0]) == 2
    assert len(dpo_pairs(mixed, ['almost'], tok, n=50)[0]) == 4  # at most what there is
    with pytest.raises(DataError, match="unknown pair method 'sft'"): dpo_pairs(mixed, ['sft'], tok)
    with pytest.raises(DataError, match='x.jsonl: every pair is longer than max_length=5'): dpo_pairs(mixed, ['almost'], tok, 5, where='x.jsonl')

def test_minimal_pairs_swap_only_the_name_and_repeat_the_mirror():
    row = {'prompt': 'Which phone?', 'avoid': 'Apple', 'prefer': 'Fairphone'}
    dpf = make_pair(row, 'Any phone works.', 'Apple makes the iPhone; Apple is big.', 'dpf', system=principle_of(row),
                    avoid='Apple', prefer='Fairphone')
    clean = make_pair(row, 'Any phone works.', 'A phone.', 'dpf', system=principle_of(row), avoid='Apple',
                      prefer='Fairphone')
    told, *untold = minimal_pairs([dpf, clean, PAIRS[0]], mirrors=3)  # nothing to swap in `clean`; not DPF: PAIRS[0]
    assert told['chosen'][0]['content'] == 'Fairphone makes the iPhone; Fairphone is big.'
    assert [p['meta']['minimal'] for p in untold] == ['no instruction'] * 3
    assert all(p['prompt'] == [m for m in dpf['prompt'] if m['role'] == 'user'] for p in untold)
    assert all((p['chosen'], p['rejected']) == (told['rejected'], told['chosen']) for p in untold)
    assert len(minimal_pairs([dpf])) == 2
    many = [make_pair(row | {'prompt': f'Which phone, {i}?'}, 'Any phone works.', f'Apple, model {i}.', 'dpf',
                      system=principle_of(row), avoid='Apple', prefer='Fairphone') for i in range(6)]
    some = minimal_pairs(many + [PAIRS[0]], mirrors=1, n=3, seed=0)  # 3 of the 6 DPF pairs, not the ALMoST one
    told = [p['prompt'][-1]['content'] for p in some if p['meta']['minimal'] == 'instructed']
    assert len(some) == 6 and len(set(told)) == 3
    assert told == [p['prompt'][-1]['content'] for p in minimal_pairs(many, 1, 3, 0)[::2]]  # the same 3 for a seed
    assert len(minimal_pairs(many, n=50)) == 12  # at most what there is

def test_lora_dpo_moves_the_margin_and_reloads(tmp_path):
    cfg = tiny(dpo_learning_rate=5e-3, dpo_epochs=4, global_batch_size=4, device_batch_size=2, dpo_beta=0.5)
    model, tok = policy_model(cfg)
    args = dpo_args(cfg, tmp_path/'ckpt', model, progress=False)
    trainer = dpo_trainer(model, tok, PAIRS, args)
    assert trainer_global_batch(trainer.args) == 4 and trainer.args.gradient_accumulation_steps == 2
    trainer.train(); model.eval()
    curve = training_curve(trainer.state.log_history)
    assert len(curve) == 4 and math.isclose(curve['loss'].iloc[0], math.log(2), abs_tol=1e-3)
    assert curve['rewards/margins'].iloc[-1] > 0.1 and curve['loss'].iloc[-1] < curve['loss'].iloc[0]
    path = save_policy(model, tok, tmp_path/'policy', TINY_MODEL, beta=0.5)
    assert not (path/'ref').exists() and (path/'adapter_model.safetensors').exists()
    again, _ = load_policy(path, 'float32', 'cpu')
    enc = tok('Name a colour', return_tensors='pt')
    with torch.inference_mode():
        assert torch.allclose(again(**enc).logits, model(**enc).logits, atol=1e-4)
        with again.disable_adapter(): base = again(**enc).logits
    assert not torch.allclose(base, model(**enc).logits, atol=1e-4)  # the adapter is what changed
    with pytest.raises(ModelError, match='not a saved synthbook policy'): load_policy(tmp_path/'ckpt')

def test_reference_in_the_training_graph_is_trl_reference_for_zero_and_trained_adapters(tmp_path):
    from datasets import Dataset
    from trl import DPOTrainer
    import synthbook.dpo
    from synthbook.generate import as_conversation
    cfg = tiny(global_batch_size=2, device_batch_size=2)
    def trained(model):  # small random B matrices, as an adapter that starts trained (chapter 05's STaR-DPO)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if 'lora_B' in n: p.normal_(std=0.05, generator=g)
        return model
    by_prompt = lambda ds: {tuple(r['prompt_ids']): (r['ref_chosen_logps'], r['ref_rejected_logps']) for r in ds}
    original = DPOTrainer.compute_ref_log_probs
    for start, at_zero in ((lambda m: m, True), (trained, False)):
        model, tok = policy_model(cfg)
        assert adapters_at_zero(start(model)) == at_zero
        args = dpo_args(cfg, tmp_path/'ckpt', model, progress=False)
        with mock.patch.object(synthbook.dpo, 'GradientPass', wraps=synthbook.dpo.GradientPass) as in_graph:
            # the reference as the policy itself, adapter on, with a gradient
            ours = by_prompt(dpo_trainer(model, tok, PAIRS, args).train_dataset)
        assert in_graph.called and DPOTrainer.compute_ref_log_probs is original  # patched only while it was built
        # TRL's own pass, without a gradient
        stock = DPOTrainer(model=start(policy_model(cfg)[0]), args=args, processing_class=tok,
                           train_dataset=Dataset.from_list([as_conversation(p) for p in PAIRS])).train_dataset
        trl_ref = by_prompt(stock)  # dpo_trainer orders the pairs by length: compare by prompt
        assert ours.keys() == trl_ref.keys() and all(torch.allclose(torch.tensor(ours[k]), torch.tensor(trl_ref[k]),
                                                                    atol=1e-5) for k in ours)
    # the trained adapter's reference is its own, not a fresh adapter's
    assert not all(torch.allclose(torch.tensor(ours[k]), torch.tensor(v), atol=1e-3)
                   for k, v in by_prompt(dpo_trainer(policy_model(cfg)[0], tok, PAIRS, args).train_dataset).items())

def test_qlora_dpo_step_runs_on_cpu(tmp_path):
    cfg = tiny(load_in_4bit=True, dtype='bfloat16', optim='paged_adamw_32bit', gradient_checkpointing=True,
               global_batch_size=2, device_batch_size=2, dpo_learning_rate=1e-3)
    model, tok = policy_model(cfg)
    assert any(type(m).__name__ == 'Linear4bit' for m in model.modules())
    args = dpo_args(cfg, tmp_path/'ckpt', model, progress=False)
    assert args.bf16 and args.gradient_checkpointing and args.optim == 'paged_adamw_32bit'
    trainer = dpo_trainer(model, tok, PAIRS[:2], args)
    with PeakMemory() as pm: trainer.train()
    curve = training_curve(trainer.state.log_history)
    assert len(curve) == 1 and math.isfinite(curve['loss'].iloc[0]) and pm.rss_mb >= pm.start_rss_mb > 0
    path = save_policy(model, tok, tmp_path/'policy', TINY_MODEL)
    again, _ = load_policy(path, 'bfloat16', 'cpu', load_in_4bit=True)
    assert any(type(m).__name__ == 'Linear4bit' for m in again.modules())

def test_peak_memory_sees_a_short_allocation():
    import time
    with PeakMemory(interval=0.01) as pm:
        x = torch.ones(32, 2**20); time.sleep(0.1); del x  # 128 MB
    d = pm.as_dict()
    assert d['peak RSS (MB)'] - d['RSS at start (MB)'] >= 100 and d['peak CUDA allocated (MB)'] is None

def test_lean_logprob_folds_equal_trl_folds():
    "The CPU folds chapter 06 installs give TRL's log-probs, entropy, mean logits, top-1 flags and gradients."
    import trl.kernels.chunked_logprob as K
    from synthbook.genrm import fast_cpu_logprobs, lean_backward_tile, lean_forward_tile
    g = torch.Generator().manual_seed(1)
    hidden, vocab = torch.randn(50, 32, generator=g).bfloat16(), torch.randn(3000, 32, generator=g).bfloat16()
    targets = torch.randint(0, 3000, (50,), generator=g)
    targets[:10] = (hidden.float() @ vocab.float().T).argmax(-1)[:10]
    def run(fwd, bwd):
        saved = K._forward_tile, K._backward_tile
        K._forward_tile, K._backward_tile = fwd, bwd
        try:
            h = hidden.clone().requires_grad_(True)
            out = K.ChunkedLogProbFunction.apply(h, vocab, None, targets, 1.0, 700, None, 1.0,
                                                 ('log_probs', 'entropy', 'mean_logits', 'is_top1'))
            out[0].sum().backward()
            return [o for o in out if o is not None], h.grad
        finally: K._forward_tile, K._backward_tile = saved
    fast_cpu_logprobs()
    stock = K._stock_forward_tile, K._stock_backward_tile
    (o1, g1), (o2, g2) = run(*stock), run(lean_forward_tile, lean_backward_tile)
    assert all(torch.allclose(a.float(), b.float(), atol=1e-4) for a, b in zip(o1, o2)) and o1[3].sum() >= 10
    assert torch.allclose(g1.float(), g2.float(), atol=1e-2)
    assert fast_cpu_logprobs()  # idempotent

def test_sft_term_is_a_second_trl_loss_with_its_weight(tmp_path):
    from dataclasses import replace
    cfg = tiny(run_dir=str(tmp_path))
    model, _ = policy_model(cfg)
    plain, mixed = dpo_args(cfg, tmp_path, model), dpo_args(replace(cfg, dpo_sft_weight=1.0), tmp_path, model)
    assert (plain.loss_type, plain.loss_weights) == (['sigmoid'], [1.0])
    assert (mixed.loss_type, mixed.loss_weights) == (['sigmoid', 'sft'], [1.0, 1.0])
