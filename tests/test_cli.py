import json
import pytest
from synthbook.data import read_jsonl
from synthbook.run import sha256_file
from conftest import ROOT

def test_check_accepts_recipes_and_rejects_unknown_keys(run_cli, tmp_path):
    r = run_cli('check', 'recipes/smoke.yaml')
    assert r.returncode == 0 and 'recipes/smoke.yaml: ok' in r.stdout
    bad = tmp_path/'bad.yaml'; bad.write_text('name: x\nbatchsize: 4\n')
    r = run_cli('check', bad)
    assert r.returncode == 2
    assert r.stderr.strip() == f"synthbook: error: unknown key 'batchsize' in {bad}: did you mean 'batch_size'?"

def test_bad_set_fails_before_running(run_cli, tmp_path):
    r = run_cli('run', 'recipes/smoke.yaml', '--set', 'n_promts=3', '--run-dir', tmp_path)
    assert r.returncode == 2 and "did you mean 'n_prompts'" in r.stderr
    assert not any(tmp_path.iterdir())

def test_tiny_chain_writes_run_folder(run_cli, tmp_path):
    out = tmp_path/'run'
    r = run_cli('run', 'recipes/smoke.yaml', '--set', 'model=tiny-random', '--set', 'n_prompts=12', '--set',
                'max_new_tokens=8', '--run-dir', out)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((out/'run.json').read_text())
    assert rec['status'] == 'ok' and list(rec['stages']) == ['00_core', '01_data', '02_generate', '03_synthetic_feedback', '04_reward_model',
                                                         '05_generative_reward_models', '06_dpo', '07_evaluate']
    assert all(s['status'] == 'ok' and s['seconds'] > 0 for s in rec['stages'].values())
    assert rec['parameters']['model'] == 'tiny-random' and rec['parameters']['n_prompts'] == 12
    assert rec['env']['transformers'] and rec['env']['torch']
    for name, digest in rec['artifacts'].items(): assert sha256_file(out/name) == digest
    assert {'env.json', 'prompts_train.jsonl', 'generations.jsonl', 'generation_stats.json'} <= set(rec['artifacts'])
    for nb in rec['stages']:
        executed = json.loads((out/'notebooks'/f'{nb}.ipynb').read_text())
        injected = [c for c in executed['cells'] if 'injected-parameters' in c['metadata'].get('tags', [])]
        assert injected and 'tiny-random' in ''.join(injected[0]['source']) or nb == '01_data'
    prompts = [p for s in ('train', 'heldout') for p in read_jsonl(out/f'prompts_{s}.jsonl', kind='prompts')]
    gens = read_jsonl(out/'generations.jsonl', kind=None)
    assert len(gens) == rec['parameters']['n_samples'] * len(prompts) == rec['metrics']['generation_stats']['sequences']
    # chapter 03: every pair is valid, names its method and split, and sits in the file of its split
    qa = rec['metrics']['feedback_stats']['qa']
    for split in ('train', 'heldout'):
        pairs = read_jsonl(out/f'pairs_{split}.jsonl')
        assert pairs and all(p['meta']['split'] == split and p['method'] in qa for p in pairs)
    assert sum(q['pairs out'] for q in qa.values()) == sum(len(read_jsonl(out/f'pairs_{s}.jsonl')) for s in ('train', 'heldout'))
    for method in qa: assert (out/f'{method}.md').exists()
    # chapter 04: a saved reward model and accuracies with intervals on both evaluation sets
    acc = rec['metrics']['reward_stats']['accuracy']
    assert {'held-out synthetic/all', 'labelled/all'} <= set(acc)
    assert all(0 <= a['ci low'] <= a['accuracy'] <= a['ci high'] <= 1 for a in acc.values())
    assert (out/'reward_model'/'adapter_model.safetensors').exists()
    # chapter 05: all six judges compared on the same pairs of both sets, and the trained judges saved
    rows = rec['metrics']['genrm_stats']['comparison']
    judges = {'Bradley-Terry RM', 'zero-shot judge', 'GenRM', 'CoT-GenRM', 'STaR-SFT', 'STaR-DPO'}
    assert {r['judge'] for r in rows} == judges and len(rows) == 2 * len(judges)
    for r in rows:
        assert r.get('note') or (0 <= r['ci low'] <= r['accuracy'] <= r['ci high'] <= 1 and r['s / 100 judgments'] > 0)
    assert (out/'judges'/'genrm'/'synthbook_judge.json').exists()
    # chapter 06: a policy trained with the recipe's global batch and saved with its base model recorded
    d = rec['metrics']['dpo_stats']
    assert d['batch'] == {'per device': 1, 'accumulation': 8, 'processes': 1, 'global': 8} and d['steps'] >= 1
    assert json.loads((out/'policy'/'synthbook_policy.json').read_text())['base_model'] == 'tiny-random'
    # chapter 07: win rates by both judges, mention rates and lengths, and a report with every chapter in it
    e = rec['metrics']['eval_stats']
    assert len(e['win_rates']) == 4 and len(e['mention_rates']) == 4 and len(e['lengths']) == 5
    assert len(read_jsonl(out/'eval_responses.jsonl', kind=None)) == sum(e['prompts'].values())
    report = (out/'report.md').read_text()
    assert '_Not run' not in report and '## What each step bought' in report and '| 00_core | ok |' in report

def test_failing_stage_stops_with_one_line_and_records_failure(run_cli, tmp_path):
    r = run_cli('run', 'recipes/smoke.yaml', '--stages', '01_data', '--set', 'prompt_source=missing.jsonl',
                '--run-dir', tmp_path)
    assert r.returncode == 2
    assert 'stage 01_data failed' in r.stderr and 'DataError: missing.jsonl: no such file' in r.stderr
    rec = json.loads((tmp_path/'run.json').read_text())
    assert rec['status'] == 'failed' and rec['stages']['01_data']['status'] == 'failed'

def test_papermill_runs_a_chapter_directly(tmp_path):
    import papermill
    papermill.execute_notebook(str(ROOT/'nbs'/'01_data.ipynb'), str(tmp_path/'out.ipynb'), cwd=str(ROOT/'nbs'),
                               parameters=dict(run_dir=str(tmp_path), n_prompts=10), kernel_name='python3',
                               progress_bar=False)
    assert len(read_jsonl(tmp_path/'prompts_train.jsonl', kind='prompts')) + \
           len(read_jsonl(tmp_path/'prompts_heldout.jsonl', kind='prompts')) == 10
