import ast, os
from pathlib import Path
import pytest, yaml
from synthbook.core import DEFAULT_STAGES, Config, RecipeError, load_recipe
from conftest import ROOT

def write(tmp_path, text, name='r.yaml'):
    p = tmp_path/name; p.write_text(text); return p

def test_every_recipe_parses():
    recipes = sorted((ROOT/'recipes').glob('*.yaml'))
    assert {p.name for p in recipes} >= {'smoke.yaml'}
    for p in recipes: assert isinstance(load_recipe(p), Config)

def test_smoke_recipe_is_offline_cpu():
    c = load_recipe(ROOT/'recipes'/'smoke.yaml')
    assert (c.model, c.device, c.name) == ('smollm2-135m-instruct', 'cpu', 'smoke')
    assert c.stages == DEFAULT_STAGES and c.stages[-1] == '07_evaluate'

def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    p = write(tmp_path, 'name: x\nmax_new_token: 3\n')
    with pytest.raises(RecipeError) as e: load_recipe(p)
    assert str(e.value) == f"unknown key 'max_new_token' in {p}: did you mean 'max_new_tokens'?"

def test_unknown_key_without_close_match_lists_keys(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key 'colour' in .*known keys: name, run_dir"):
        load_recipe(write(tmp_path, 'colour: red\n'))

@pytest.mark.parametrize('text,key', [('n_prompts: "48"', 'n_prompts'), ('load_in_4bit: 1', 'load_in_4bit'),
                                      ('seed: true', 'seed'), ('stages: 01_data', 'stages'), ('stages: [1, 2]', 'stages'),
                                      ('temperature: hot', 'temperature')])
def test_wrong_type_fails_by_name(tmp_path, text, key):
    p = write(tmp_path, text + '\n')
    with pytest.raises(RecipeError, match=f"key '{key}' must be .* in {p}"): load_recipe(p)

def test_int_is_accepted_for_float(tmp_path):
    assert load_recipe(write(tmp_path, 'temperature: 1\n')).temperature == 1

def test_bad_yaml_and_non_mapping_and_missing(tmp_path):
    with pytest.raises(RecipeError, match='not valid YAML'): load_recipe(write(tmp_path, 'a: [1,\n'))
    with pytest.raises(RecipeError, match='must be a mapping'): load_recipe(write(tmp_path, '- a\n- b\n'))
    with pytest.raises(RecipeError, match='does not exist'): load_recipe(tmp_path/'nope.yaml')

def test_yaml_is_read_safely(tmp_path):
    with pytest.raises(RecipeError, match='not valid YAML'): load_recipe(write(tmp_path, 'name: !!python/object:os.system x\n'))

def test_overrides_win_and_are_checked(tmp_path):
    p = write(tmp_path, 'n_prompts: 8\n')
    assert load_recipe(p, n_prompts=4).n_prompts == 4
    with pytest.raises(RecipeError, match="did you mean 'n_prompts'"): load_recipe(p, n_prompt=4)

def parameters_cell(nb):
    import json
    for c in json.loads(nb.read_text())['cells']:
        if 'parameters' in c.get('metadata', {}).get('tags', []): return ''.join(c['source'])

def test_notebook_parameters_are_config_fields_with_config_defaults(monkeypatch):
    "Each chapter's parameters cell declares Config fields, typed, commented, with Config's defaults."
    monkeypatch.delenv('SYNTHBOOK_MODEL', raising=False)
    defaults, hints = Config().to_dict(), Config.__annotations__
    nbs = [p for p in sorted((ROOT/'nbs').glob('[0-9]*.ipynb'))]
    assert nbs
    for nb in nbs:
        src = parameters_cell(nb)
        if nb.stem in ('08_scale', '09_report'): assert src is None; continue  # not chain stages
        assert src, f'{nb.name} has no parameters cell'
        for line in src.strip().splitlines():
            stmt = ast.parse(line).body[0]
            assert isinstance(stmt, ast.AnnAssign), f'{nb.name}: {line!r} is not `name: type = value`'
            name = stmt.target.id
            assert name in defaults, f'{nb.name}: {name} is not a Config field'
            assert ast.unparse(stmt.annotation) == hints[name], f'{nb.name}: {name} typed differently from Config'
            comment = line.split('#', 1)[1] if '#' in line else ''
            assert comment.strip() and '=' not in comment, f'{nb.name}: {name} needs a short comment without ='
            assert eval(ast.unparse(stmt.value), {'os': os}) == defaults[name], f'{nb.name}: default of {name} differs from Config'

def test_suggestions_cover_typos_and_abbreviations():
    from synthbook.core import suggest_key
    keys = ['learning_rate', 'batch_size', 'n_prompts', 'lora_r']
    assert suggest_key('lr', keys) == 'learning_rate' and suggest_key('bs', keys) == 'batch_size'
    assert suggest_key('n_promts', keys) == 'n_prompts' and suggest_key('colour', keys) is None
