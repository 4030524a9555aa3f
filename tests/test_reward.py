"Chapter 04: the reward model's head, training, save/reload, and the statistics, on the tiny random model."
import math
import numpy as np
import pytest, torch
from synthbook.core import TINY_MODEL, ModelError, load_adapter, load_model
from synthbook.data import DataError, load_pairs, pairs_of
from synthbook.feedback import make_pair
from synthbook.core import Config, write_json
from synthbook.feedback import Judge, Scorer
from synthbook.reward import (reward_model, train_reward_model, save_reward_model, load_reward_model, RewardScorer,
                              RewardJudge, wilson_interval, accuracy_row, longer_wins, margins,
                              decider_check, at_chance, gated_methods)

PAIRS = [make_pair({'prompt': f'Question {i}?'}, f'A careful correct answer {i}.', f'Wrong {i}.', 'almost', split='train')
         for i in range(8)]

def test_wilson_interval_covers_the_mean_narrows_with_n_and_holds_at_small_n():
    small, big = wilson_interval(15, 20), wilson_interval(150, 200)
    assert small[0] <= 0.75 <= small[1] and big[0] <= 0.75 <= big[1]
    assert big[1] - big[0] < small[1] - small[0]
    assert wilson_interval(3, 3)[0] < 0.5 and wilson_interval(3, 3)[1] == 1.0  # three of three is not certainty
    # against a textbook value (Wilson 1927; Newcombe 1998, table I: 81 of 263 gives 0.2553 to 0.3662)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    with pytest.raises(ValueError): wilson_interval(0, 0)
    assert accuracy_row([1, 0.5, 0])['small n'] and accuracy_row([1, 0.5, 0])['accuracy'] == 0.5

def test_pairs_of_names_unknown_methods():
    with pytest.raises(DataError, match="unknown pair method 'dfp'"): pairs_of(PAIRS, ['dfp'], 'x.jsonl')
    with pytest.raises(DataError, match='x.jsonl has no pairs of method dpf'): pairs_of(PAIRS, ['dpf'], 'x.jsonl')
    assert len(pairs_of(PAIRS, ['almost'])) == 8

def test_shipped_judge_check_pairs():
    rows = load_pairs('synthbook:judge-check')
    assert len(rows) == 40 and longer_wins(rows).mean() < 0.5  # the set does not reward length

def test_reward_kind_and_unquantized_head():
    with pytest.raises(ModelError, match='kind must be'): load_model(TINY_MODEL, kind='value')
    m, _ = load_model(TINY_MODEL, dtype='float32', device='cpu', load_in_4bit=True, kind='reward')
    assert type(m.score) is torch.nn.Linear and m.config.num_labels == 1  # a 4-bit head could not train in full

def test_train_save_reload_keeps_the_head(tmp_path):
    rm, tok = reward_model(TINY_MODEL, dtype='float32', device='cpu', seed=0)
    assert all(p.dtype == torch.float32 for p in rm.parameters() if p.requires_grad)
    before = margins(RewardScorer(rm, tok), PAIRS)
    trainer = train_reward_model(rm, tok, PAIRS, tmp_path/'out', epochs=2, learning_rate=5e-3, batch_size=4, progress=False)
    assert trainer.state.global_step == 4
    after = margins(RewardScorer(rm, tok), PAIRS)
    assert after.mean() > before.mean()  # training on the pairs widens their margin
    path = save_reward_model(rm, tok, tmp_path/'rm', TINY_MODEL)
    rm2, tok2 = load_reward_model(path, dtype='float32', device='cpu')
    assert np.allclose(margins(RewardScorer(rm2, tok2), PAIRS), after, atol=1e-4)
    with pytest.raises(ModelError, match='not a saved synthbook reward model'): load_reward_model(tmp_path/'out')
    with pytest.raises(ModelError, match="records kind 'reward', expected 'policy'"): load_adapter(path, 'policy')

def test_reward_judge_is_order_symmetric():
    rm, tok = reward_model(TINY_MODEL, dtype='float32', device='cpu', seed=3)
    j = RewardJudge(RewardScorer(rm, tok))
    (_, p_ab), (_, p_ba) = j.judge_many([('Q?', 'yes', 'no'), ('Q?', 'no', 'yes')])
    assert math.isclose(p_ab, 1 - p_ba, abs_tol=1e-6)


class Letter(Judge):
    "Names `letter` whatever the order: a judge that reads positions, not answers."
    def __init__(self, letter): self.letter = letter
    def judge_many(self, items): return [(self.letter, 0.9 if self.letter == 'A' else 0.1)] * len(items)

class Table(Scorer):
    def __init__(self, table): self.table = table
    def score_many(self, items): return [self.table.get(r, 0.0) for _, r in items]

def test_chance_gate_leaves_out_position_readers_and_coin_flippers():
    pairs = PAIRS * 5  # 40 pairs
    biased = decider_check(Letter('A'), pairs, method='rlaif')
    assert (biased['n'], biased['accuracy'], biased['position bias']) == (40, 0.5, 1.0)
    assert at_chance(biased).startswith('position bias 1.00 > 0.9')
    right = {p['chosen'][0]['content']: 1.0 for p in PAIRS}
    good = decider_check(Table(right), pairs)
    assert (good['accuracy'], good['position bias'], at_chance(good)) == (1.0, None, None)
    flat = decider_check(Table({}), pairs)  # every score equal: every pair a tie, counted half
    assert flat['accuracy'] == 0.5 and 'covers 0.5 (n=40)' in at_chance(flat)

def test_gated_methods_reads_the_gate_and_refuses_to_leave_nothing(tmp_path):
    cfg = Config(run_dir=str(tmp_path))
    assert gated_methods(cfg, ['almost', 'rlaif']) == ['almost', 'rlaif']  # no gate ran: every method
    write_json({'left out': {'rlaif': 'position bias 1.00 > 0.9 (n=40)'}, 'checks': []}, tmp_path/'chance_gate.json')
    said = []
    assert gated_methods(cfg, ['almost', 'rlaif'], log=said.append) == ['almost']
    assert said == ["rlaif is left out of training: its decider's position bias 1.00 > 0.9 (n=40)"]
    with pytest.raises(DataError, match="every method of \\['rlaif'\\] is at chance"): gated_methods(cfg, ['rlaif'])
