"Chapter 07: win rates, mention rates, lengths and the run report."
import json, math
import pytest, torch
from synthbook.core import TINY_MODEL, Config, write_json, write_stats
from synthbook.data import DataError
from synthbook.evaluate import before_after, length_row, mcnemar_exact, mention_row, win_rate_row
from synthbook.report import md_table, write_report
from synthbook.feedback import Judge

class Table(Judge):
    "Verdicts from a lookup on (a, b); unknown comparisons are unreadable."
    def __init__(self, verdicts): self.verdicts = verdicts
    def judge_many(self, items):
        out = []
        for _, a, b in items:
            v = self.verdicts.get((a, b))
            out.append((v, {'A': 1.0, 'B': 0.0}.get(v, math.nan)))
        return out

def test_mcnemar_exact_against_hand_values():
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 0) == mcnemar_exact(4, 4) == 1.0

def test_win_rate_counts_both_orders_and_unreadable_as_ties():
    j = Table({('good', 'bad'): 'A', ('bad', 'good'): 'B',  # consistent: the new response wins
               ('x', 'y'): 'A', ('y', 'x'): 'A'})  # position-biased: a tie
    row = win_rate_row(j, ['p1', 'p2', 'p3'], ['good', 'x', 'q'], ['bad', 'y', 'r'], judge='t')
    assert (row['wins'], row['ties'], row['losses'], row['n']) == (1, 2, 0, 3)
    assert row['win rate'] == pytest.approx(2 / 3, abs=1e-3) and row['position bias'] == pytest.approx(1 / 3, abs=1e-3)
    assert row['judge'] == 't' and row['ci low'] <= row['win rate'] <= row['ci high']
    with pytest.raises(DataError, match='no prompts'): win_rate_row(j, [], [], [])

def test_mention_and_length_rows():
    rows = [{'avoid': 'Coca-Cola', 'avoid_aliases': ['Coke']}] * 3
    m = mention_row(rows, ['I like Coke.', 'Cokes are sweet', 'Water.'], ['Pepsi.', 'Coca-Cola!', 'Water.'])
    assert (m['before'], m['after'], m['stopped mentioning'], m['started mentioning']) == (0.667, 0.333, 1, 0)
    assert m['named the alternative'] == 0  # the rows name no alternative
    pepsi = [r | {'prefer': 'Pepsi'} for r in rows]
    swaps = mention_row(pepsi * 2, ['Coke', 'Coke', 'Coke', 'Coke', 'Pepsi', 'Water'],
                        ['Pepsi!', 'Water', 'Coke', 'Coca-Cola and Pepsi', 'Water', 'Pepsi'])
    assert (swaps['stopped mentioning'], swaps['named the alternative'], swaps['started mentioning']) == (2, 1, 0)
    with pytest.raises(ValueError): mention_row(rows, ['a'], ['b', 'c', 'd'])
    ln = length_row(['one two', 'three'], ['one two three four', ''])
    assert (ln['words before'], ln['words after'], ln['longer after'], ln['empty after']) == (1.5, 2.0, 0.5, 1)

def test_md_table_escapes_and_formats():
    t = md_table([{'a': 'x|y', 'b': 0.123456, 'c': None}])
    assert t.splitlines() == ['| a | b | c |', '|---|---|---|', '| x\\|y | 0.123 | – |']
    assert md_table([]) == '_(none)_'

def test_report_marks_missing_chapters_and_fails_on_missing_folder(tmp_path):
    write_stats({'prompts': 4, 'sequences': 8, 'new_tokens': 80, 'truncated': 2, 'backend': 'transformers'},
                tmp_path/'generation_stats.json', tokens_per_second=10.0)
    text = write_report(tmp_path).read_text()
    assert '| 4 | 8 | 80 | 2 | transformers |' in text and 'tokens_per_second' not in text  # results only
    assert '| tokens_per_second | 10 |' in (tmp_path/'timings.md').read_text()
    for chapter in ('03 Synthetic feedback', '04 Bradley-Terry reward model', '05 Generative reward models', '06 DPO', '07 Evaluation'):
        assert f'## {chapter}\n\n_Not run' in text
    with pytest.raises(DataError, match='no such run folder'): write_report(tmp_path/'missing')

def test_before_after_switches_only_the_adapter():
    from synthbook.core import load_model
    from synthbook.dpo import policy_model
    policy, tok = policy_model(Config(model=TINY_MODEL, device='cpu', dtype='float32'))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if 'lora_B' in n: p.add_(0.5)  # a trained-looking adapter
    base_model, _ = load_model(TINY_MODEL, 'float32', 'cpu')
    from synthbook.generate import TransformersBackend
    convs = [[{'role': 'user', 'content': 'Hello there'}], [{'role': 'user', 'content': 'Name a fruit'}]]
    res = before_after(policy, tok, {'one': convs[:1], 'both': convs}, max_new_tokens=6)
    (base1, tuned1), (base, tuned) = res['one'], res['both']
    plain = [o for [o] in TransformersBackend(base_model, tok, progress=False).generate(convs, 1, 6, temperature=0)]
    assert base == plain and tuned != base and base1 == base[:1] and tuned1 == tuned[:1]
    assert type(policy).__name__.startswith('Peft')  # answered from plain copies, the policy itself untouched
    # base responses already known are reused, not generated again
    known = before_after(policy, tok, {'both': convs}, max_new_tokens=6, before={'both': ['x', 'y'], 'other': ['z']})
    assert known == {'both': (['x', 'y'], tuned)}
