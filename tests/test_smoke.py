import json, re
import pytest
from synthbook.data import read_jsonl

@pytest.mark.slow
def test_smoke_recipe_on_the_real_bundled_model(run_cli, tmp_path):
    "The README's main job: recipes/smoke.yaml, bundled SmolLM2 on CPU, offline."
    r = run_cli('run', 'recipes/smoke.yaml', '--run-dir', tmp_path, env={'HF_HUB_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path/'run.json').read_text())
    assert rec['status'] == 'ok' and rec['parameters']['model'] == 'smollm2-135m-instruct'
    gens = read_jsonl(tmp_path/'generations.jsonl', kind=None)
    train = read_jsonl(tmp_path/'prompts_train.jsonl', kind='prompts')
    assert len(gens) == 2 * len(train)
    # a real instruct model answers in English words; a random one emits token soup
    words = [w for g in gens for w in re.findall(r"[A-Za-z]+", g['response'])]
    common = {'the', 'a', 'to', 'and', 'of', 'is', 'in', 'you', 'it', 'for'}
    assert len(words) > 20 * len(gens) and sum(w.lower() in common for w in words) / len(words) > 0.1
    stats = rec['metrics']['generation_stats']
    assert stats['new_tokens'] > 0 and stats['tokens_per_second'] > 0
    nb = json.loads((tmp_path/'notebooks'/'02_generate.ipynb').read_text())
    assert not [o for c in nb['cells'] for o in c.get('outputs', []) if o['output_type'] == 'error']
