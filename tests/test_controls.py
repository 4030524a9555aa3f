"""The positive controls of a finished run on the real model, against the thresholds the handbook sets for them:
`make controls` after `make smoke`, or
`SYNTHBOOK_CONTROLS_RUN=<run folder> pytest tests/test_controls.py`. Skipped without that variable, so `make test` stays
inside CI's time. A threshold that 135M does not reach is marked xfail with the figures measured, and reported as XPASS
the day it is met."""
import json, os
from pathlib import Path
import pytest

RUN = os.environ.get('SYNTHBOOK_CONTROLS_RUN')
pytestmark = pytest.mark.skipif(not RUN, reason='set SYNTHBOOK_CONTROLS_RUN to a finished run folder (make controls)')

@pytest.fixture(scope='module')
def record():
    rec = json.loads((Path(RUN)/'run.json').read_text())
    assert rec['status'] == 'ok', f'{RUN}: not a finished run'
    assert rec['parameters']['model'] == 'smollm2-135m-instruct', f'{RUN}: not a run of the bundled model'
    return rec

@pytest.fixture(scope='module')
def metrics(record): return record['metrics']

def p_of(row) -> float: return 0.0 if row['p (McNemar)'] == '< 1e-4' else row['p (McNemar)']

def control_row(metrics, which:str) -> dict:
    return next(r for r in metrics['eval_stats']['control'] if r['set'] == f'Pink Elephant, {which}')

@pytest.mark.parametrize('entities, drop, p', [('seen entities', 0.50, 0.01), ('unseen entities', 0.40, 0.05)])
def test_dpo_control_lowers_the_instructed_mention_rate(metrics, entities, drop, p):
    told = control_row(metrics, f'{entities}, instructed')
    assert told['relative change'] <= -drop and p_of(told) < p, told
    assert abs(told['words after'] - told['words before']) <= 0.3 * told['words before'], told  # no shorter answers
    assert told['empty after'] == 0, told

# with the smoke recipe's prompt_instruction on an AMD EPYC, at the notebooks' learning rate 5e-4: 0.354 -> 0.396 with 2
# passes, 0.354 -> 0.458 with 3 (3 stopped, 8 started, p = 0.23: a rise of 0.104, past the limit by one prompt in 48);
# at the recipe's 1e-3 and 2 passes, chosen on the validation entities (chapter 07's sweep): 0.354 -> 0.354 (4 / 4).
# Met as a point estimate; the change's paired interval (chapter 07's paired_change) is 0.000 [-0.120, 0.120] there
# (n=48) and +0.024 [-0.071, 0.117] at the defaults (n=84): no large move, not confirmed within 0.10 at these sizes
def test_dpo_control_keeps_the_uninstructed_rate_on_unseen_entities(metrics):
    untold = control_row(metrics, 'unseen entities, no instruction')  # avoidance on request, not a forgotten entity
    assert abs(untold['after'] - untold['before']) <= 0.10, untold

# seen entities: the control drops them untold too, with one mirror per pair (0.567 -> 0.367, n=30, smoke; 0.442 ->
# 0.288, n=52, defaults) and with two (0.567 -> 0.333 smoke; 0.442 -> 0.288 defaults), in those runs where a training
# pair names the entity and where none does alike; at the defaults on Intel more where one does (0.722 -> 0.389, n=18,
# against 0.324 -> 0.235, n=34; chapter 07). The unseen entities' untold rate holds. Retrained with seeds 1 and 2 on
# a smoke run's pairs: 0.567 -> 0.433 and -> 0.300 (n=30), so the fall is no one seed's accident. Nor is it the told
# swap leaking: told, nearly every answer that stops names the preferred entity instead (26 of 27 seen at the defaults,
# 13 of 16 in smoke; 29 of 31 at the defaults on Intel); untold, 1 of 11 and 0 of 7 do, 0 of 12 on Intel (chapter 07's
# 'named the alternative'). Those smoke figures are from
# greedy originals alone (33 DPF training pairs); with the recipe's sampled originals (52 pairs) the fall is 0.567 ->
# 0.467 (6 stopped, 3 started), exactly 0.10, so this passes at smoke size on the limit and fails at the defaults.
# At the defaults with dpf_original_samples=4 (96 pairs; chapters 03, 06, 07 re-run): 0.442 -> 0.404 (n=52, 9 stopped,
# 7 started). On an Intel Xeon with AMX (other generations, so other pairs), where the committed outputs came from:
# 0.462 -> 0.288 (n=52) at the defaults; 0.567 -> 0.467 in smoke (51 DPF training pairs), on the limit again. With
# DPO's decoder layers compiled (chapter 06's reference_in_training_graph), at the defaults: 0.462 -> 0.308 (9 stopped,
# 1 started, p = 0.022); in smoke 0.567 -> 0.500 (3 stopped, 1 started), within the limit; with the smoke recipe's 2
# passes of the control (3 before), 0.567 -> 0.467 (6 stopped, 3 started), on the limit; on an AMD EPYC, 0.567 -> 0.400
# in smoke with 2 passes (6 stopped, 1 started). With the smoke recipe's prompt_instruction, on an AMD EPYC, the seen
# entities' untold rate rises instead: 0.300 -> 0.400 with 2 passes, 0.300 -> 0.433 with 3 (2 stopped, 6 started), and
# 0.300 -> 0.433 at the recipe's learning rate 1e-3 and 2 passes (1 stopped, 5 started, p = 0.22). With the line and
# 1e-3 for 2 passes as the notebooks' defaults, on an AMD EPYC (the committed outputs since 2026-12-07): 0.346 -> 0.462
# (n=52, 5 stopped, 11 started, p = 0.21); on the validation entities 0.190 -> 0.333 (n=42). The change's paired
# interval (chapter 07's paired_change) covers both no change and a rise past 0.10 at the defaults (+0.115 [-0.036,
# 0.259], n=52) and in smoke (+0.133 [-0.032, 0.287], n=30): at these sizes the prompts cannot decide this check. On
# chapter 01's probes (105 new prompts about the defaults' trained entities, kept for choosing settings) the rise is
# real, +0.133 [0.039, 0.224]. Retrained with one mirror or two, seeds 0 and 1, it rose in all 8 readings there and on
# the validation entities (+0.03 to +0.12 and +0.14 to +0.31): the seed moves it as much as the mirrors (chapter 07)
@pytest.mark.xfail(reason='the control moves seen entities untold too: 0.442 -> 0.288 (defaults, AMD), 0.462 -> 0.308 '
                          '(defaults, Intel); in smoke 0.567 -> 0.467 with 2 passes (0.500 with 3), 0.567 -> 0.400 '
                          'on AMD; with prompt_instruction 0.300 -> 0.433 (smoke, AMD, 5e-4 and 1e-3), 0.346 -> 0.462 '
                          '(defaults, AMD, 1e-3)', strict=False)
def test_dpo_control_keeps_the_uninstructed_rate_on_seen_entities(metrics):
    untold = control_row(metrics, 'seen entities, no instruction')
    assert abs(untold['after'] - untold['before']) <= 0.10, untold

def bt_control(metrics, method:str) -> dict:
    return next(c for c in metrics['reward_stats']['controls'] if c['method'] == method)

# one pass over 31 DPF pairs at smoke size: 0.618 and 0.406 in two runs (n=34, 32); six passes (CONTROL_EPOCHS) over 33:
# 0.762 [0.615, 0.865] (n=42); at the notebooks' defaults, six passes over 59 pairs: 0.970 [0.898, 0.992] (n=67). A
# 3-fold pilot on the 33 smoke training pairs found nothing better than six passes at 5e-4 (0.909): 12 passes 0.909, lr
# 1e-3 0.818, minimal pairs added 0.818 / 0.758 (n=33). With the smoke recipe's sampled originals
# (dpf_original_samples), six passes over 52 pairs: 0.926 [0.824, 0.971] (n=54). On an Intel Xeon with AMX (the
# committed outputs until 2026-12-07): 1.000 [0.929, 1.000] (n=50) over 51 pairs in smoke, but 0.889 [0.788, 0.945]
# (n=63) over 61 at the defaults, below 0.90: the threshold is not met on every run. The smoke recipe on an AMD EPYC:
# 0.907 [0.801, 0.960] (n=54) over 52 pairs; with its prompt_instruction (most answers then end): 0.978 [0.887, 0.996]
# (n=46) over 42; at the defaults with the line, on an AMD EPYC (the committed outputs since): 1.000 [0.938, 1.000]
# (n=58) over 70
def test_reward_model_control_on_dpf_pairs(metrics):
    c = bt_control(metrics, 'dpf')
    assert c['accuracy'] >= 0.90 and c['ci low'] > 0.75, c

# on the run's 13 or 14 held-out contrast pairs alone: 0.923 and 0.538 in two runs that differed only in the generation
# batch, 0.786 after six passes (its untrained head: 0.786 too). With chapter 03's control prompts
# (almost_control_prompts): 0.760 [0.626, 0.857], n=50, in a smoke run (untrained 0.700); 0.750 [0.612, 0.851], n=48,
# at the notebooks' defaults (untrained 0.729); with the smoke recipe's prompt_instruction on an AMD EPYC, 0.727
# [0.582, 0.837], n=44 (untrained 0.455). On an Intel Xeon with AMX: 0.809 [0.675, 0.896], n=47, untrained 0.489,
# in smoke; 0.729 [0.590, 0.834], n=48, untrained 0.458, at the defaults (the committed outputs until 2026-12-07). At
# the defaults with the line on an AMD EPYC (committed since): 0.727 [0.582, 0.837], n=44, untrained 0.455
def test_reward_model_control_on_almost_pairs(metrics):
    c = bt_control(metrics, 'almost')
    assert c['accuracy'] >= 0.70 and c['ci low'] > 0.5, c

# with an adapter at the defaults (10 passes at CONTROL_LEARNING_RATE over 35 pairs, each batch holding both orders of
# its pairs; AMD): 0.991 [0.923, 0.999], position bias 0.052, n=58, Bradley-Terry 1.000. Retrained with seeds 1
# and 2 (the pairs drawn, the adapter's init, the pass orders): 0.948 [0.859, 0.982] both, position bias 0.276 and
# 0.328, 0.052 below Bradley-Terry: seed 0 is the best of three, the checks hold by a few pairs. In shuffled batches:
# 14 passes 0.974 [0.895, 0.994] with position bias 0.345; 7 passes over 70 pairs 0.836, 0.241; the judges' 3 passes at
# 2e-4 stayed at chance, 0.543, 0.97. Trained in full (judge_control_full), shuffled, on a copy of an AMD smoke run's
# folder, 42 training pairs: 20 passes 0.978 [0.887, 0.996], position bias 0.022 (n=46), Bradley-Terry 0.978; 10 passes
# 0.913, 0.304 (untrained 0.489, 0.935)
def test_genrm_control_beats_chance_without_position_bias_level_with_bradley_terry(metrics):
    rows = [r for r in metrics['genrm_stats']['control'] if r['judge'] == 'GenRM, dpf alone']
    if not rows: pytest.skip(f'{RUN}: GenRM was not trained on the DPF rule alone (judge_control_epochs 0)')
    c, bt = rows[0], bt_control(metrics, 'dpf')
    assert c['ci low'] > 0.5 and c['position bias'] <= 0.30, c
    assert abs(c['accuracy'] - bt['accuracy']) <= 0.05, (c, bt)  # the GenRM paper's in-domain parity

# the refusal cue, where the DPF rule's control is skipped (smoke) or at chance: 1.000 [0.916, 1.000], position bias
# 0.00, n=42, in a smoke run (untrained 0.083); 1.000 [0.946, 1.000], n=67, at the notebooks' defaults (untrained
# 0.187); on an Intel Xeon with AMX 1.000 [0.943, 1.000], n=63, at the defaults (untrained 0.159); with the smoke
# recipe's prompt_instruction on an AMD EPYC 1.000 [0.923, 1.000], n=46 (untrained 0.304), and at the defaults with it
# 1.000 [0.938, 1.000], n=58 (untrained 0.362)
def test_genrm_control_learns_a_cue_it_can_read(metrics):
    g = metrics['genrm_stats']
    rows = [r for r in g['control'] if r['judge'] == 'GenRM, dpf, rejected a refusal']
    if not rows:  # chapter 05 leaves it out only where GenRM beats chance on the DPF rule itself
        assert g['control_checks'].get('DPF rule: interval above 0.5'), g['control_checks']
        pytest.skip(f'{RUN}: no refusal control, GenRM beat chance on the DPF rule')
    assert rows[0]['ci low'] > 0.5 and rows[0]['position bias'] <= 0.30, rows[0]

def comparison_rows(metrics, judge:str) -> list[dict]:
    return [r for r in metrics['genrm_stats']['comparison'] if r['judge'] == judge]

# before the format lesson was mirrored (each row also with the answers swapped and the other letter): 0.094 / 0.156 at
# the defaults, 0.208 / 0.125 and 0.042 / 0.125 in two smoke runs (12 chains per set). Mirrored, on an Intel Xeon with
# AMX: 0.125 / 0.094 at the defaults (32 chains per set), 0.042 / 0.000 in smoke; at the defaults with the concise line,
# on an AMD EPYC: 0.125 / 0.000
def test_cot_genrm_writes_its_verdict_after_the_format_lesson(metrics):
    for row in comparison_rows(metrics, 'CoT-GenRM'):  # both sets: a parseable verdict in at least 80 % of chains
        assert row['parse failures'] <= 0.20, row

# before the mirrored format lesson: in smoke runs STaR-SFT 0.292 / 0.125 and 0.208 / 0.125, STaR-DPO 0.208 / 0.250 and
# 0.083 / 0.167; at the defaults STaR-SFT 0.031 / 0.031 and STaR-DPO 0.219 / 0.156. Mirrored, on an Intel Xeon with AMX:
# STaR-SFT 0.083 / 0.000 and STaR-DPO 0.083 / 0.000 in smoke, 0.062 / 0.000 and 0.094 / 0.031 at the defaults. On an
# AMD EPYC in smoke: STaR-SFT 0.000 / 0.083, STaR-DPO 0.042 / 0.208 (5 of 24 labelled chains, past the limit), though
# the same judge wrote all 32 chains on the 16 training pairs no judge trained on; with an SFT term (weight 1) beside
# STaR-DPO's loss, the same 0.042 / 0.208. With the smoke recipe's prompt_instruction, on bare labelled questions:
# CoT-GenRM 0.083 / 0.375, STaR-SFT 0.042 / 0.208, STaR-DPO 0.125 / 0.333 (judges trained on questions that end in the
# line wrote past their budget on questions that do not); with the labelled questions ending in it too
# (labelled_pairs): 0.083 / 0.042, 0.042 / 0.000 and 0.125 / 0.000; at the defaults with the line (AMD): STaR-SFT
# 0.000 / 0.031, STaR-DPO 0.094 / 0.062
@pytest.mark.parametrize('judge', ['STaR-SFT', 'STaR-DPO'])
def test_star_judges_write_their_verdict(metrics, judge):
    for row in comparison_rows(metrics, judge):
        assert row['parse failures'] <= 0.20, row

# with the recipe's 16 judge-training pairs (32 comparisons) STaR gave 18 and 23 pairs in two smoke runs, 22 from 56
# training pairs: a pair needs a right and a wrong chain of one comparison, and the format-taught judge wrote nearly one
# letter (67 of the 74 rows of one run's format lesson ended in [[A]], each chain's own vote; its chains voted A in 0.95
# of them). With the lesson mirrored and STaR sampling on at least STAR_MIN_PAIRS (24) pairs, on an Intel Xeon with AMX:
# 63 pairs from 48 comparisons in smoke; 239 from 186 at the defaults (92 before, on AMD); with the smoke recipe's
# prompt_instruction on an AMD EPYC, 58 from 48; at the defaults with the line (AMD), 219 from 194
def test_star_dpo_trains_on_50_pairs(metrics):
    star_dpo = [r for r in metrics['genrm_stats']['star_rounds'] if r['judge'] == 'STaR-DPO']
    assert sum(r['training rows'] for r in star_dpo) >= 50, star_dpo
