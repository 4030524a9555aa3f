"Chapter 05: judges that write their verdict, on fakes and the tiny random model."
import numpy as np
import pytest, torch
from synthbook.core import TINY_MODEL, ModelError
from synthbook.data import DataError, sample_rows
from synthbook.feedback import Judge, PromptedJudge, make_pair
from synthbook.generate import Backend
from synthbook.genrm import (CoTJudge, evaluate_judge, genrm_rows, fresh_judge, judge_row, load_judge, oriented,
                             save_judge, sft_row, split_chain, star_dpo_rows, star_pairs, star_records, star_sft_rows,
                             star_summary, train_judge_dpo, train_judge_sft, chain_text, judge_system)

PAIRS = [make_pair({'prompt': f'Question {i}?'}, f'Right answer {i}.', f'Wrong {i}.', 'almost', split='train') for i in range(6)]

class Scripted(Backend):
    "Returns the given texts in turn, whatever the prompt."
    def __init__(self, texts): super().__init__(); self.texts, self.seen = list(texts), []
    def _generate(self, convs, n, max_new_tokens, temperature, top_p, seed):
        self.seen += convs
        out = [[self.texts.pop(0) for _ in range(n)] for _ in convs]
        return out, sum(len(t) for o in out for t in o)

class Fixed(Judge):
    "Says `first` in the given order and `second` when swapped, with the matching probabilities."
    def __init__(self, first, second): self.first, self.second, self.name = first, second, 'fixed'
    def judge_many(self, items):
        vs = [self.first if a.startswith('Right') else self.second for _, a, _ in items]
        return [(v, 1.0 if v == 'A' else 0.0) for v in vs]

def test_evaluation_counts_position_bias_and_credits_ties_half():
    right = evaluate_judge(Fixed('A', 'B'), {'s': PAIRS})[0]  # follows the right answer in both orders
    biased = evaluate_judge(Fixed('A', 'A'), {'s': PAIRS})[0]  # always the first position
    wrong = evaluate_judge(Fixed('B', 'A'), {'s': PAIRS})[0]
    assert (right['accuracy'], right['position bias'], right['ties']) == (1.0, 0.0, 0.0)
    assert (biased['accuracy'], biased['position bias'], biased['ties']) == (0.5, 1.0, 1.0)
    assert wrong['accuracy'] == 0.0 and np.isnan(right['parse failures'])
    with pytest.raises(DataError, match='no comparisons'): judge_row([], 1.0)

def test_split_chain_and_prompt_names():
    assert split_chain('Because A is right. Final verdict: [[A]] extra') == ('Because A is right.', 'A')
    assert split_chain('no verdict [[C]]') == ('no verdict [[C]]', None)
    assert split_chain(chain_text('', 'B')) == ('', 'B')
    with pytest.raises(ValueError, match='mtbench'): judge_system('mtbench')

def test_cot_judge_votes_and_reads_out_missing_verdicts():
    from synthbook.core import load_model
    m, tok = load_model(TINY_MODEL, dtype='float32', device='cpu')
    gen = Scripted(['x [[A]]', 'y [[A]]', 'no verdict here', 'z [[B]]'])
    j = CoTJudge(m, tok, gen=gen, k=2, system='sys')
    (v1, p1), (v2, p2) = j.judge_many([('q', 'a', 'b'), ('q', 'b', 'a')])
    assert (v1, p1) == ('A', 1.0) and v2 in ('A', 'B', 'tie') and p2 in (0.0, 0.5)
    assert j.counts == {'samples': 4, 'unwritten': 1}
    assert gen.seen[0][0] == {'role': 'system', 'content': 'sys'} and "[The Start of Assistant A's Answer]\na\n" in gen.seen[0][1]['content']

class FakeCoT(CoTJudge):
    "Samples the given verdicts; with the hint, `hinted` ones."
    def __init__(self, verdicts, hinted): self.k, self.system, self.verdicts, self.hinted = 2, 'sys', verdicts, hinted
    def sample(self, convs, k=None):
        vs = self.hinted if 'Hint:' in convs[0][-1]['content'] else self.verdicts
        return [[dict(rationale=f"{'h' if vs is self.hinted else 'r'}{i}{j}", verdict=v, written=True) for j, v in enumerate(vs[i])] for i in range(len(convs))]

def test_star_sorts_chains_rationalizes_and_builds_rows():
    items = [oriented(p, s) for p, s in zip(PAIRS[:3], (False, True, False))]  # labels A, B, A
    recs = star_records(FakeCoT([['A', 'B'], ['A', 'A'], ['B', 'B']], [['B', 'A'], ['B', 'B']]), items)  # hints go to the unsolved two
    assert star_summary(recs) == {'comparisons': 3, 'solved by sampling': 1, 'rationalized': 1, 'unsolved': 1, 'dpo pairs': 1}
    sft = star_sft_rows(recs, 'sys')
    assert [r['completion'][0]['content'] for r in sft] == ['r00\nVerdict: [[A]]', 'h00\nVerdict: [[B]]']
    assert all('Hint' not in r['prompt'][-1]['content'] for r in sft)  # trained as if no hint had been given
    [dpo] = star_dpo_rows(recs, 'sys')
    assert (dpo['chosen'][0]['content'], dpo['rejected'][0]['content']) == ('r00\nVerdict: [[A]]', 'r01\nVerdict: [[B]]')
    assert star_records(FakeCoT([['B', 'B']], [['A', 'A']]), items[:1], rationalize=False)[0]['rationalized'] is None
    split = star_records(FakeCoT([['A', 'B', 'B', 'A']], []), items[:1])  # two right, two wrong: paired one to one
    assert star_summary(split)['dpo pairs'] == 2
    assert [(d['chosen'][0]['content'], d['rejected'][0]['content']) for d in star_dpo_rows(split, 'sys')] == [
        ('r00\nVerdict: [[A]]', 'r01\nVerdict: [[B]]'), ('r03\nVerdict: [[A]]', 'r02\nVerdict: [[B]]')]

def test_star_samples_on_more_pairs_than_few_judges_learn_from():
    rows = [make_pair({'prompt': f'Question {i}?'}, 'Right.', 'Wrong.', 'dpf', split='train') for i in range(10)]
    few = sample_rows(rows, 3, seed=1)  # what judge_train_pairs: 3 draws
    more = star_pairs(rows, few, seed=1, at_least=6)
    assert len(more) == 6 and more[:3] == few and len({str(r['prompt']) for r in more}) == 6  # theirs, then 3 more
    assert star_pairs(rows, rows, seed=1, at_least=6) == rows  # judges on all pairs: the same pairs, same order
    assert star_pairs(rows, sample_rows(rows, 7, seed=1), seed=1, at_least=6) == sample_rows(rows, 7, seed=1)
    assert star_pairs(rows, few, seed=1, at_least=50) == sample_rows(rows, 10, seed=1)  # never more than there are

def test_genrm_training_moves_the_indicator_read_out(tmp_path):
    m, tok = fresh_judge(TINY_MODEL, dtype='float32', device='cpu', seed=0)
    rows = [sft_row(oriented(p, swap=True), chain_text('', 'B'), 'sys') for p in PAIRS]  # always B: learnable by a tiny model
    j = PromptedJudge(m, tok, 'logits', system='sys')
    before = np.mean([p for _, p in j.judge_many([oriented(p, True)[:3] for p in PAIRS])])
    trainer = train_judge_sft(m, tok, rows, tmp_path/'t', epochs=3, learning_rate=5e-3, batch_size=3, progress=False)
    after = np.mean([p for _, p in j.judge_many([oriented(p, True)[:3] for p in PAIRS])])
    assert trainer.state.global_step == 6 and before > 0.4 and after < before - 0.15  # p(A) fell: the read-out sees what was trained
    assert len(genrm_rows(PAIRS, 'sys')) == 12
    path = save_judge(m, tok, tmp_path/'genrm', TINY_MODEL, 'verdict', 'sys')
    reloaded = load_judge(path, dtype='float32', device='cpu')
    assert np.allclose([p for _, p in reloaded.judge_many([oriented(PAIRS[0], True)[:3]])],
                       [p for _, p in j.judge_many([oriented(PAIRS[0], True)[:3]])], atol=1e-4)
    with pytest.raises(ValueError, match='readout must be'): save_judge(m, tok, tmp_path/'x', TINY_MODEL, 'cot-genrm', 'sys')
    with pytest.raises(ModelError, match='not a saved synthbook judge'): load_judge(tmp_path/'t')

def test_train_genrm_puts_a_pairs_two_orders_in_one_batch(tmp_path):
    import re
    from synthbook.genrm import train_genrm
    m, tok = fresh_judge(TINY_MODEL, dtype='float32', device='cpu', seed=0)
    trainer = train_genrm(m, tok, PAIRS[:3], 'sys', tmp_path/'g', epochs=2, learning_rate=1e-3, batch_size=2)
    assert trainer.state.global_step == 6  # 2 passes over 3 pairs in both orders, 2 rows a batch
    batches = list(trainer.get_train_dataloader())
    questions = [{re.search(r'Question \d', tok.decode(ids)).group() for ids in b['input_ids']} for b in batches]
    assert len(batches) == 6 and all(len(q) == 1 for q in questions)  # each batch: one pair, asked both ways
    assert sorted(q.pop() for q in questions[:3]) == ['Question 0', 'Question 1', 'Question 2']  # a pass, every pair

def test_star_dpo_trains_and_saves_only_the_policy_adapter(tmp_path):
    m, tok = fresh_judge(TINY_MODEL, dtype='float32', device='cpu', seed=0)
    rows = [{'prompt': sft_row(oriented(p), '', 'sys')['prompt'],
             'chosen': [{'role': 'assistant', 'content': chain_text('fine', 'A')}],
             'rejected': [{'role': 'assistant', 'content': chain_text('fine', 'B')}]} for p in PAIRS]
    trainer = train_judge_dpo(m, tok, rows, tmp_path/'t', beta=1.0, epochs=1, learning_rate=5e-3, batch_size=3, progress=False)
    logs = [h for h in trainer.state.log_history if 'loss' in h]
    assert trainer.state.global_step == 2 and logs[-1]['rewards/margins'] > 0
    path = save_judge(m, tok, tmp_path/'dpo', TINY_MODEL, 'cot', 'sys')
    assert (path/'adapter_model.safetensors').exists() and not (path/'ref').exists()
    j = load_judge(path, dtype='float32', device='cpu', k=1, max_new_tokens=4)
    assert isinstance(j, CoTJudge) and j.k == 1 and j.system == 'sys'

def test_genrm_control_trains_on_one_method_and_reads_its_held_out_pairs_both_ways(tmp_path):
    from synthbook.core import Config
    from synthbook.genrm import genrm_control
    cfg = Config(model=TINY_MODEL, device='cpu', dtype='float32', run_dir=str(tmp_path), judge_batch_size=4)
    pair = lambda i, split, method: make_pair({'prompt': f'Where can I watch films ({i})?'}, f'At a library ({i}).',
                                              f'On Netflix ({i}).', method, system='Do not mention Netflix.', split=split)
    train = [pair(i, 'train', 'dpf') for i in range(4)] + [pair(9, 'train', 'almost')]
    heldout = [pair(100 + i, 'heldout', 'dpf') for i in range(3)] + [pair(200, 'heldout', 'almost')]
    before, after = genrm_control(cfg, 'dpf', train, heldout, 'Judge.', epochs=1)
    assert (before['n'], after['n'], before['train pairs'], after['train pairs']) == (3, 3, 0, 4)  # dpf pairs only
    assert after['judge'] == 'GenRM, dpf alone' and after['set'] == 'held-out dpf'
    assert 0 <= after['position bias'] <= 1 and 0 <= after['ci low'] <= after['accuracy'] <= after['ci high'] <= 1
    with pytest.raises(DataError): genrm_control(cfg, 'west_of_n', train, heldout, 'Judge.', epochs=1)
    # the cue control: the same pairs with each rejected answer a refusal, its own set, judge name and adapter folder
    before, after = genrm_control(cfg, 'dpf', train, heldout, 'Judge.', 1, 1e-3, 2, refusals=True)
    assert (before['set'], after['set']) == ('held-out dpf, rejected a refusal',) * 2 and after['n'] == 3
    assert after['judge'] == 'GenRM, dpf, rejected a refusal' and after['train pairs'] == 4
    assert (tmp_path/'judge_controls'/'dpf_refusals').is_dir() and (tmp_path/'judge_controls'/'dpf').is_dir()

def test_genrm_control_can_train_every_weight_in_fp32_with_bf16_matmuls(tmp_path, monkeypatch):
    from synthbook.core import Config
    import synthbook.genrm as genrm
    seen, train_sft = {}, genrm.train_judge_sft
    def spy(model, *a, **kw):
        params = list(model.parameters())
        seen.update(dtypes={p.dtype for p in params}, frozen=sum(not p.requires_grad for p in params),
                    peft=hasattr(model, 'peft_config'), kw=kw, first=params[0].detach().clone())
        out = train_sft(model, *a, **kw)
        seen['moved'] = (next(model.parameters()).detach() - seen['first']).abs().max().item()
        return out
    monkeypatch.setattr(genrm, 'train_judge_sft', spy)
    cfg = Config(model=TINY_MODEL, device='cpu', dtype='bfloat16', run_dir=str(tmp_path))
    pair = lambda i, split: make_pair({'prompt': f'Where can I watch films ({i})?'}, f'At a library ({i}).',
                                      f'On Netflix ({i}).', 'dpf', system='Do not mention Netflix.', split=split)
    before, after = genrm.genrm_control(cfg, 'dpf', [pair(i, 'train') for i in range(4)],
                                        [pair(100 + i, 'heldout') for i in range(3)], 'Judge.', 1, 1e-3, 2, full=True)
    # no adapter, nothing frozen, fp32 master weights with bf16 matmuls (the run's dtype), and the weights moved
    assert seen['dtypes'] == {torch.float32} and seen['frozen'] == 0 and not seen['peft']
    assert seen['kw']['bf16'] is True and seen['moved'] > 0
    assert (before['n'], after['n'], after['train pairs'], after['judge']) == (3, 3, 4, 'GenRM, dpf alone')
