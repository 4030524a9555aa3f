"Chapter 03's methods on fakes (exact behaviour) and on the tiny random model (shapes and invariants)."
import json, math, random
import pytest
import torch
from dataclasses import replace
from synthbook.core import TINY_MODEL, Config, load_model
from synthbook.data import read_jsonl, DataError, load_prompts, split_rows
from synthbook.generate import Backend, TransformersBackend
from synthbook.feedback import (
    PromptSetup, contrast_pairs, contrast_filter, near_duplicates, jaccard, Judge, PromptedJudge, judge_both_orders,
    rlaif_pairs, Scorer, RatingScorer, west_of_n_pairs, mentions, mentions_avoided, dpf_pairs, critique, substitute,
    mentioning_originals, next_token_probs, qa_row, write_pairs, make_pair, response_of, parse_verdict, VERDICT_PREFIX,
    control_prompts)

class Scripted(Backend):
    "A backend that answers from a function of the conversation's last user turn."
    name = 'scripted'
    def __init__(self, answer): super().__init__(); self.answer, self.calls = answer, []
    def _generate(self, convs, n, max_new_tokens, temperature, top_p, seed):
        self.calls.append(convs)
        return [[self.answer(c[-1]['content'], k) for k in range(n)] for c in convs], 0

class FixedJudge(Judge):
    "Answers from a function of (a, b)."
    def __init__(self, fn): self.fn = fn
    def judge_many(self, items): return [self.fn(a, b) for _, a, b in items]

class TableScorer(Scorer):
    def __init__(self, table): self.table = table
    def score_many(self, items): return [self.table.get(r, math.nan) for _, r in items]

PE = {'prompt': 'Most famous cola?', 'avoid': 'Coca-Cola', 'avoid_aliases': ['Coke'], 'prefer': 'Pepsi', 'split': 'train'}

@pytest.fixture(scope='module')
def tiny():
    return load_model(TINY_MODEL, dtype='float32', device='cpu')

# --- near duplicates and the contrast filter -------------------------------------------------------------------------

def test_near_duplicates_finds_planted_copies_among_many():
    rng = random.Random(0)
    vocab = [f'w{i}' for i in range(2000)]
    texts = [' '.join(rng.choices(vocab, k=40)) for _ in range(1500)]
    planted = {}
    for j in (300, 800, 1499):  # a copy with one word changed: trigram Jaccard about 0.86
        words = texts[j - 100].split(); words[20] = 'changed'; texts[j] = ' '.join(words)
        planted[j] = jaccard(texts[j - 100], texts[j])
    assert all(0.8 <= v < 1 for v in planted.values())
    assert near_duplicates(texts, 0.8) == sorted(planted)

def test_contrast_filter_rules_in_order():
    assert contrast_filter('  ', 'x') == 'empty'
    assert contrast_filter('a b c d e', 'a b c d e ') == 'identical'
    long = 'one two three four five six seven eight nine ten eleven'
    assert contrast_filter(long, long + ' twelve') == 'near identical'
    assert contrast_filter('short answer', 'a much longer answer that goes on and on', length_ratio=2.0) == 'weak much longer'
    assert contrast_filter('short answer', 'a much longer answer that goes on and on', length_ratio=5.0) is None

def test_contrast_pairs_label_strong_over_weak_and_log_every_drop():
    prompts = [{'prompt': f'q{i}', 'split': 'train' if i % 2 else 'heldout', 'source': 's'} for i in range(4)]
    strong_gen = Scripted(lambda u, k: {'q0': 'Good answer zero.', 'q1': 'Same.', 'q2': 'Brief.', 'q3': 'Right three.'}[u])
    weak_gen = Scripted(lambda u, k: {'q0': 'Bad zero.', 'q1': 'Same.', 'q2': ' '.join(['rambling'] * 30), 'q3': 'Wrong.'}[u])
    pairs, log = contrast_pairs(prompts, strong_gen, weak_gen, PromptSetup('strong', 'sys', 2), PromptSetup('weak'),
                                strong_model='big', weak_model='small')
    assert [l['dropped'] for l in log] == [None, 'identical', 'weak much longer', None]
    assert [response_of(p['chosen']) for p in pairs] == ['Good answer zero.', 'Right three.']
    assert pairs[0]['prompt'] == [{'role': 'user', 'content': 'q0'}]  # the pair's prompt is the bare prompt
    assert pairs[0]['meta']['chosen_setup']['model'] == 'big' and pairs[0]['meta']['split'] == 'heldout'
    sent = strong_gen.calls[0][0]
    assert sent[0] == {'role': 'system', 'content': 'sys'} and len(sent) == 6  # system, 2 demos, prompt

# --- judges ------------------------------------------------------------------------------------------------------------

def test_control_prompts_are_the_held_out_share_of_the_prompts_after_the_run(tmp_path):
    cfg = Config(run_dir=str(tmp_path), n_prompts=48, almost_control_prompts=160, heldout_fraction=0.25,
                 prompt_instruction='')  # the prompts as shipped
    extra = control_prompts(cfg)
    run_prompts = {r['prompt'] for r in load_prompts(n=48)}
    after = load_prompts(n=208)[48:]
    assert [r['prompt'] for r in extra] == [r['prompt'] for r in split_rows(after, 0.25, 0)[1]]
    assert 20 < len(extra) < 60 and {r['split'] for r in extra} == {'heldout'}
    assert not run_prompts & {r['prompt'] for r in extra}
    assert control_prompts(replace(cfg, almost_control_prompts=0)) == []
    with pytest.raises(DataError, match='almost_control_prompts 200 with n_prompts 48: asked for 248 prompts'):
        control_prompts(replace(cfg, almost_control_prompts=200))

def test_both_orders_cancel_position_bias_and_count_it():
    always_a = FixedJudge(lambda a, b: ('A', 0.8))
    rows = judge_both_orders(always_a, [('q', 'x', 'y')], 0.02)
    assert rows[0]['label'] == 'tie' and rows[0]['same_position'] is True and rows[0]['p'] == pytest.approx(0.5)
    prefers_x = FixedJudge(lambda a, b: ('A', 0.9) if a == 'x' else ('B', 0.1))
    rows = judge_both_orders(prefers_x, [('q', 'x', 'y'), ('q', 'y', 'x')], 0.02)
    assert [r['label'] for r in rows] == ['a', 'b'] and rows[0]['same_position'] is False
    unreadable = FixedJudge(lambda a, b: (None, math.nan) if a == 'y' else ('A', 1.0))
    assert judge_both_orders(unreadable, [('q', 'x', 'y')])[0]['label'] is None

def test_rlaif_pairs_count_identical_ties_and_unreadable():
    prompts = [{'prompt': p, 'split': 'train'} for p in ('same', 'x-wins', 'tie', 'broken')]
    samples = {'same': ['s', 's'], 'x-wins': ['y', 'x'], 'tie': ['t1', 't2'], 'broken': ['b1', 'b2']}
    def fn(a, b):
        if 'b' in a + b: return (None, math.nan)
        if 't' in a: return ('A', 0.5)
        return ('A', 0.95) if a == 'x' else ('B', 0.05)
    pairs, log = rlaif_pairs(prompts, samples, FixedJudge(fn), 0.02, 'judge-x')
    assert [l['label'] for l in log] == ['identical', 'b', 'tie', None]
    assert len(pairs) == 1 and response_of(pairs[0]['chosen']) == 'x' and response_of(pairs[0]['rejected']) == 'y'
    assert pairs[0]['score_chosen'] == pytest.approx(0.95) and pairs[0]['meta']['judge_model'] == 'judge-x'

def test_parse_verdict_reads_the_last_verdict():
    assert parse_verdict('[[A]] no wait [[B]]') == 'B' and parse_verdict('A or B?') is None

def test_next_token_probs_normalise_and_ignore_batching(tiny):
    model, tok = tiny
    convs = [[{'role': 'user', 'content': 'Pick one ' * k}] for k in range(1, 6)]
    p1 = next_token_probs(model, tok, convs, VERDICT_PREFIX, ['A', 'B'], batch_size=1)
    p4 = next_token_probs(model, tok, convs, VERDICT_PREFIX, ['A', 'B'], batch_size=4)
    assert p1.shape == (5, 2) and torch.allclose(p1.sum(1), torch.ones(5))
    assert torch.allclose(p1, p4, atol=1e-4)  # left padding and the length sort do not change a comparison's result
    with pytest.raises(ValueError, match='one token'): next_token_probs(model, tok, convs, '', ['Alpha Beta', 'B'])

def test_prompted_judge_readouts(tiny):
    model, tok = tiny
    j = PromptedJudge(model, tok, 'logits')
    v, p = j.judge('What is 2+2?', '4', '5')
    assert v in ('A', 'B', 'tie') and 0 <= p <= 1
    gen = Scripted(lambda u, k: 'Both fine, but [[B]]' if '[The Start of Assistant A' in u else '???')
    t = PromptedJudge(model, tok, 'text', gen=gen)
    assert t.judge_many([('q', 'a', 'b')]) == [('B', 0.0)] and t.last_texts == ['Both fine, but [[B]]']
    with pytest.raises(ValueError, match='needs a generation backend'): PromptedJudge(model, tok, 'text')
    with pytest.raises(ValueError, match='logits or text'): PromptedJudge(model, tok, 'vibes')

# --- West-of-N ---------------------------------------------------------------------------------------------------------

def test_west_of_n_keeps_the_widest_gaps():
    prompts = [{'prompt': f'q{i}', 'split': 'train'} for i in range(5)]
    samples = {'q0': ['a', 'b', 'c'], 'q1': ['d', 'e'], 'q2': ['f', 'g'], 'q3': ['h', 'h'], 'q4': ['i', 'j']}
    scores = {'a': 1.0, 'b': 3.0, 'c': 2.0, 'd': 2.0, 'e': 2.1, 'f': 1.0, 'g': 4.0, 'h': 3.0, 'i': 2.5, 'j': 2.5}
    pairs, log = west_of_n_pairs(prompts, samples, TableScorer(scores), keep_fraction=0.5)
    assert [l['fate'] for l in log] == ['kept', 'low confidence', 'kept', 'too few distinct', 'tie']
    assert [(response_of(p['chosen']), response_of(p['rejected'])) for p in pairs] == [('b', 'a'), ('g', 'f')]
    assert all(p['score_chosen'] > p['score_rejected'] for p in pairs)
    with pytest.raises(ValueError, match='keep_fraction'): west_of_n_pairs(prompts, samples, TableScorer(scores), 0)

def test_rating_scorer_is_an_expected_rating(tiny):
    s = RatingScorer(*tiny).score_many([('q', 'a'), ('q', 'b')])
    assert len(s) == 2 and all(1 <= x <= 5 for x in s)

# --- Direct Principle Feedback -----------------------------------------------------------------------------------------

def test_mention_matcher_edges():
    assert mentions("Coke's rival; COCA-COLA; cokes", 'Coca-Cola', ['Coke']) == 3
    assert mentions('Cocaine is not a cola', 'Coca-Cola', ['Coke']) == 0
    assert mentions('New Yorkers love New York', 'New York') == 1  # 'New Yorkers' is another word
    assert mentions('Mount Everest', 'mount everest') == 1

def test_dpf_prefers_a_clean_on_topic_revision_then_falls_back_to_the_rule():
    rows = [dict(PE, prompt='p-llm'), dict(PE, prompt='p-rule'), dict(PE, prompt='p-clean')]
    originals = ['Coke is the most famous cola.', 'Coca-Cola, of course.', 'Pepsi is great.']
    revisions = {'p-llm': ['Coke again.', 'A cola from Atlanta.', 'Pepsi is the best-known rival cola.'],
                 'p-rule': ['Coca-Cola!', 'Coke.', 'Still Coke.']}
    gen = Scripted(lambda u, k: revisions['p-llm' if 'Coke is the most' in u else 'p-rule'][k])
    pairs, log = dpf_pairs(rows, originals, gen, samples=3, model='m')
    assert [l['revision'] for l in log] == ['llm', 'rule', 'not needed']
    assert response_of(pairs[0]['chosen']) == 'Pepsi is the best-known rival cola.'  # on topic beats merely clean
    assert response_of(pairs[1]['chosen']) == 'Pepsi, of course.'
    assert all(mentions_avoided(response_of(p['chosen']), p['meta']) == 0 for p in pairs)
    assert pairs[0]['prompt'][0] == {'role': 'system', 'content': 'Do not mention Coca-Cola. If it is relevant, talk about Pepsi instead.'}
    assert len(gen.calls[0]) == 2  # only the two responses that broke the principle were sent for revision

def test_mentioning_originals_resamples_only_misses_and_keeps_the_first_hit():
    rows = [dict(PE, prompt='hit'), dict(PE, prompt='miss-then-hit'), dict(PE, prompt='always-miss')]
    originals = ['Coke, surely.', 'Pepsi is nice.', 'Water.']
    drawn = {'miss-then-hit': ['Juice.', 'Coca-Cola is the one.', 'Coke!'], 'always-miss': ['Tea.', 'Milk.', 'Soda.']}
    gen = Scripted(lambda u, k: drawn[u][k])
    out, origin = mentioning_originals(rows, originals, gen, samples=3)
    assert out == ['Coke, surely.', 'Coca-Cola is the one.', 'Water.'] and origin == ['greedy', 'sampled', 'greedy']
    assert [c[-1]['content'] for c in gen.calls[0]] == ['miss-then-hit', 'always-miss']  # the hit is not resampled
    assert mentioning_originals(rows, originals, gen) == (originals, ['greedy'] * 3) and len(gen.calls) == 1
    pairs, log = dpf_pairs(rows, out, Scripted(lambda u, k: 'Pepsi.'), samples=1, original_from=origin)
    assert [p['meta']['original_from'] for p in pairs] == ['greedy', 'sampled']
    assert [l['original_from'] for l in log] == origin

def test_critique_and_substitute():
    assert critique('Pepsi only', PE) is None
    assert substitute('Coke and Coca-Cola', PE) == 'Pepsi and Pepsi'

# --- QA and cards ------------------------------------------------------------------------------------------------------

def test_qa_row_counts():
    pairs = [make_pair({'prompt': 'q'}, 'long chosen answer here', 'short', 'x', split='train'),
             make_pair({'prompt': 'q'}, 'long chosen answer here', 'short', 'x', split='train'),
             make_pair({'prompt': 'r'}, 'tiny', 'a longer rejected answer', 'x', split='train')]
    qa = qa_row('x', pairs, prompts_in=3, same_position=[True, False, True, True])
    assert (qa['pairs out'], qa['exact dups'], qa['near dups'], qa['position bias']) == (3, 1, 0, 0.75)
    assert qa['chosen longer'] == 0.667 and math.isnan(qa['mention chosen'])

def test_write_pairs_removes_stale_split_and_cards_empty_methods(tmp_path):
    pair = make_pair({'prompt': 'q'}, 'yes', 'no', 'almost', split='train')
    (tmp_path/'almost_heldout.jsonl').write_text('{"stale": true}\n')
    qa = qa_row('almost', [pair], 1)
    names = [p.name for p in write_pairs('almost', [pair], qa, {'model': 'm'}, tmp_path)]
    assert names == ['almost_train.jsonl', 'almost.md'] and not (tmp_path/'almost_heldout.jsonl').exists()
    assert len(read_jsonl(tmp_path/'almost_train.jsonl')) == 1
    card = (tmp_path/'almost.md').read_text()
    assert '| pairs out | 1 |' in card and '| position bias | n/a |' in card and '**Chosen**: yes' in card
    write_pairs('rlaif', [], qa_row('rlaif', [], 4, ties=4), {}, tmp_path)
    assert '## No pairs' in (tmp_path/'rlaif.md').read_text() and not list(tmp_path.glob('rlaif_*.jsonl'))

def test_control_prompts_end_in_the_runs_prompt_instruction(tmp_path):
    cfg = Config(run_dir=str(tmp_path), n_prompts=48, almost_control_prompts=160, prompt_instruction='')
    plain, asked = control_prompts(cfg), control_prompts(replace(cfg, prompt_instruction='Be brief.'))
    assert [r['prompt'] for r in asked] == [r['prompt'] + '\nBe brief.' for r in plain]
