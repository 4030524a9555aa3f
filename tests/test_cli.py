import json
import pytest
from synthbook.data import read_jsonl
from conftest import ROOT

def test_check_accepts_recipes_and_rejects_unknown_keys(run_cli, tmp_path):
    r = run_cli('check', 'recipes/smoke.yaml')
    assert r.returncode == 0 and 'recipes/smoke.yaml: ok' in r.stdout
    bad = tmp_path/'bad.yaml'; bad.write_text('name: x\nbatchsize: 4\n')
    r = run_cli('check', bad)
    assert r.returncode == 2
    assert r.stderr.strip() == f"synthbook: error: unknown key 'batchsize' in {bad}: did you mean 'batch_size'?"

def test_missing_data_file_fails_before_any_stage(run_cli, tmp_path):
    r = run_cli('run', 'recipes/smoke.yaml', '--set', 'prompt_source=missing.jsonl', '--run-dir', tmp_path/'run')
    assert r.returncode == 2 and not (tmp_path/'run').exists()
    assert r.stderr.strip() == f"synthbook: error: key 'prompt_source': {ROOT/'nbs'/'missing.jsonl'}: no such file"

def test_bad_set_fails_before_running(run_cli, tmp_path):
    r = run_cli('run', 'recipes/smoke.yaml', '--set', 'n_promts=3', '--run-dir', tmp_path)
    assert r.returncode == 2 and "did you mean 'n_prompts'" in r.stderr
    assert not any(tmp_path.iterdir())

def test_failing_stage_stops_with_one_line_and_records_failure(run_cli, tmp_path):
    # a valid recipe that asks the data for more than it holds: only the stage can find that out
    r = run_cli('run', 'recipes/smoke.yaml', '--stages', '01_data', '--set', 'n_prompts=100000', '--run-dir', tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert 'stage 01_data failed' in r.stderr
    assert 'DataError: asked for 100000 prompts but synthbook:general' in r.stderr
    rec = json.loads((tmp_path/'run.json').read_text())
    assert rec['status'] == 'failed' and rec['stages']['01_data']['status'] == 'failed'

def test_papermill_runs_a_chapter_directly(tmp_path):
    import papermill
    papermill.execute_notebook(str(ROOT/'nbs'/'01_data.ipynb'), str(tmp_path/'out.ipynb'), cwd=str(ROOT/'nbs'),
                               parameters=dict(run_dir=str(tmp_path), n_prompts=10), kernel_name='python3',
                               progress_bar=False)
    assert len(read_jsonl(tmp_path/'prompts_train.jsonl', kind='prompts')) + \
           len(read_jsonl(tmp_path/'prompts_heldout.jsonl', kind='prompts')) == 10

def test_an_upgrade_reruns_a_stage_and_says_which_versions_changed(tmp_path, monkeypatch):
    import synthbook.run as run
    from synthbook.core import Config
    cfg = Config(name='v', run_dir=str(tmp_path), stages=['01_data'], n_prompts=8)
    first = run.run_chain(cfg, log=lambda s: None)
    assert first['stages']['01_data']['versions'] == run.package_versions(run.KEY_PACKAGES)
    said = []
    assert run.run_chain(cfg, log=said.append)['stages']['01_data'].get('skipped')  # same versions: reused
    real = run.package_versions
    monkeypatch.setattr(run, 'package_versions', lambda names: real(names) | {'trl': '99.0'})
    said.clear()
    again = run.run_chain(cfg, log=said.append)
    assert not again['stages']['01_data'].get('skipped') and again['stages']['01_data']['versions']['trl'] == '99.0'
    old = first['stages']['01_data']['versions']['trl']
    assert said[0] == f'[01_data] running (trl {old} -> 99.0 since it last ran)', said

def test_prompt_instruction_ends_every_prompt_chapter_01_writes(tmp_path):
    import synthbook.run as run
    from synthbook.core import Config
    from synthbook.data import read_jsonl
    plain, asked, line = tmp_path/'plain', tmp_path/'asked', 'Be concise: answer in at most 50 words.'
    for out, instruction in ((plain, ''), (asked, line)):
        cfg = Config(name='p', run_dir=str(out), stages=['01_data'], n_prompts=8, pink_elephant_entities=8,
                     prompt_instruction=instruction)
        run.run_chain(cfg, log=lambda s: None)
    files = sorted(p.name for p in plain.glob('*.jsonl'))
    assert 'prompts_train.jsonl' in files and 'pink_elephants_heldout.jsonl' in files
    for name in files:  # the same rows in the same splits, each prompt one line longer
        before, after = read_jsonl(plain/name, kind='prompts'), read_jsonl(asked/name, kind='prompts')
        assert [r | {'prompt': f"{r['prompt']}\n{line}"} for r in before] == after, name
