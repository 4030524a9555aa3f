"Bad recipe values fail before any stage runs: one line naming the key and the recipe, exit status 2, nothing written."
import os
import pytest, torch
from synthbook.core import Config, RecipeError, check_machine
from synthbook.run import main

CASES = [  # (recipe line, the key the message must name)
    ('n_prompts: -5', 'n_prompts'), ('temperature: -1', 'temperature'), ('heldout_fraction: 1.5', 'heldout_fraction'),
    ('top_p: 0', 'top_p'), ('top_p: 1.5', 'top_p'), ('batch_size: 0', 'batch_size'),
    ('max_new_tokens: 0', 'max_new_tokens'), ('dpo_beta: -0.1', 'dpo_beta'), ('dpo_beta: 0', 'dpo_beta'),
    ('dtype: float8', 'dtype'), ('device: tpu', 'device'), ('backend: magic', 'backend'),
    ('eval_judge: oracle', 'eval_judge'), ('dpo_loss_type: magic', 'dpo_loss_type'),
    ('dpo_methods: [almost, rlhf]', 'dpo_methods'), ('rm_methods: []', 'rm_methods'),
    ('rm_controls: [dpf, dpf]', 'rm_controls'), ('stages: [00_core, 09_magic]', 'stages'), ('stages: []', 'stages'),
    ('device_batch_size: 3', 'device_batch_size'), ('global_batch_size: 0', 'global_batch_size'),
    ('num_processes: 3', 'num_processes'), ('validation_entities: 0.8', 'validation_entities'),
    ('seen_entity_heldout: 2', 'seen_entity_heldout'), ('lora_r: 0', 'lora_r'), ('lora_dropout: 1', 'lora_dropout'),
    ('judge_tie_margin: 0.5', 'judge_tie_margin'), ('won_keep_fraction: 0', 'won_keep_fraction'),
    ('near_dup_threshold: 0', 'near_dup_threshold'), ('rm_epochs: 0', 'rm_epochs'), ('rm_learning_rate: 0', 'rm_learning_rate'),
    ('judge_readout: vibes', 'judge_readout'), ('genrm_prompt: long', 'genrm_prompt'), ('cot_samples: 0', 'cot_samples'),
    ('star_iterations: 0', 'star_iterations'), ('dpo_epochs: 0', 'dpo_epochs'), ('dpo_sft_weight: -1', 'dpo_sft_weight'),
    ('dpo_control_learning_rate: 0', 'dpo_control_learning_rate'), ('max_length: 8', 'max_length'),
    ('seed: -1', 'seed'), ('checkpoint_steps: -1', 'checkpoint_steps'), ('n_samples: 0', 'n_samples'),
    ('almost_control_prompts: -1', 'almost_control_prompts'), ('n_prompts: 0', 'almost_control_prompts'),
]

@pytest.mark.parametrize('line,key', CASES)
def test_bad_value_fails_by_key_and_file(tmp_path, capsys, line, key):
    recipe = tmp_path/'r.yaml'
    recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\n{line}\n')
    assert main(['check', str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('synthbook: error: ') and len(err.splitlines()) == 1 and 'Traceback' not in err
    assert key in err and str(recipe) in err, err
    assert main(['run', str(recipe)]) == 2  # refused before any stage: no run folder
    assert not (tmp_path/'run').exists()

@pytest.mark.parametrize('option', ['--set', '--grid'])
def test_bad_value_on_the_command_line(tmp_path, capsys, option):
    recipe = tmp_path/'r.yaml'
    recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\n')
    args = ['sweep', str(recipe), '--grid', 'top_p=0.5,0'] if option == '--grid' else ['run', str(recipe), '--set', 'top_p=0']
    assert main(args) == 2
    assert 'top_p' in capsys.readouterr().err and not (tmp_path/'run').exists()

def test_values_that_this_machine_cannot_serve_fail_when_a_run_starts(tmp_path, capsys):
    cfg = Config(num_processes=2, global_batch_size=8, accelerate_config=str(tmp_path/'none.yaml'))
    with pytest.raises(RecipeError, match='none.yaml does not exist'): check_machine(cfg)
    recipe = tmp_path/'r.yaml'
    recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\nnum_processes: 2\naccelerate_config: {tmp_path/"none.yaml"}\n')
    assert main(['check', str(recipe)]) == 0  # a recipe for other hardware still reads
    assert main(['run', str(recipe)]) == 2 and 'accelerate_config' in capsys.readouterr().err
    assert not (tmp_path/'run').exists()

def test_what_this_machine_lacks_fails_before_any_stage(tmp_path, capsys, monkeypatch):
    recipe = tmp_path/'r.yaml'
    if not torch.cuda.is_available():
        recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\ndevice: cuda\n')
        assert main(['run', str(recipe)]) == 2 and "key 'device' is 'cuda' but this machine has no CUDA" in capsys.readouterr().err
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'bitsandbytes' else real(name, *a))
    recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\nload_in_4bit: true\n')
    assert main(['run', str(recipe)]) == 2 and "key 'load_in_4bit' needs bitsandbytes" in capsys.readouterr().err
    assert not (tmp_path/'run').exists()

def test_an_empty_recipe_says_it_is_all_defaults(tmp_path, capsys):
    recipe = tmp_path/'empty.yaml'
    recipe.write_text('# nothing set\n')
    assert main(['check', str(recipe)]) == 0
    assert capsys.readouterr().out.strip() == f'{recipe}: ok (empty: every value is its default)'

PAIR = '{"prompt": "p", "chosen": "good", "rejected": "bad"}'
DATA_CASES = [  # (key, file contents, what the message must say after file:line)
    ('prompt_source', b'{"prompt": "ok"}\n{"prompt": "ok"\n', ':2: not valid JSON'),
    ('prompt_source', b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n', ':2: not UTF-8 text (byte 0xe9'),
    ('prompt_source', b'{"prompt": "ok"}\n{"prompt": "  "}\n', ":2: field 'prompt' is empty"),
    ('prompt_source', b'{"prompt": [{"role": "wizard", "content": "hi"}]}\n',
     ":1: field 'prompt' message 1 has role 'wizard'"),
    ('prompt_source', b'{"prompt": [{"role": "user"}]}\n', ":1: field 'prompt' message 1 (user) has no text 'content'"),
    ('prompt_source', b'[1, 2]\n', ':1: expected a JSON object'),
    ('eval_pairs', PAIR.encode() + b'\n{"prompt": "p", "chosen": "a"}\n',
     ":2: missing field 'rejected'"),
    ('eval_pairs', b'{"prompt": "p", "chosen": "same", "rejected": "same"}\n',
     ":1: 'chosen' is identical to 'rejected'"),
    ('eval_pairs', b'{"prompt": "p", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}\n',
     ":1: field 'chosen' must end with an assistant message"),
    ('eval_pairs', b'\n\n', ': no rows'),
]

@pytest.mark.parametrize('key,content,msg', DATA_CASES)
def test_bad_data_file_fails_by_key_file_and_line_before_any_stage(tmp_path, capsys, key, content, msg):
    data = tmp_path/'data.jsonl'
    data.write_bytes(content)
    recipe = tmp_path/'r.yaml'
    recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\n{key}: {data}\n')
    assert main(['check', str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err
    assert f"key {key!r}: {data}{msg}" in err, err
    assert main(['run', str(recipe)]) == 2 and not (tmp_path/'run').exists()

def test_missing_data_file_is_named(tmp_path, capsys):
    recipe = tmp_path/'r.yaml'
    recipe.write_text(f'name: bad\nrun_dir: {tmp_path/"run"}\neval_pairs: {tmp_path/"nope.jsonl"}\n')
    assert main(['check', str(recipe)]) == 2
    assert f"key 'eval_pairs': {tmp_path/'nope.jsonl'}: no such file" in capsys.readouterr().err

def test_a_folder_in_use_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    import subprocess, sys
    from synthbook.run import LOCK_FILE, run_lock
    run = tmp_path/'run'
    run.mkdir()
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        (run/LOCK_FILE).write_text(str(live.pid))
        recipe = tmp_path/'r.yaml'
        recipe.write_text(f'name: busy\nrun_dir: {run}\nstages: [01_data]\n')
        assert main(['run', str(recipe)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f'run folder {run} is in use by process {live.pid}' in err, err
        assert not (run/'run.json').exists() and (run/LOCK_FILE).read_text() == str(live.pid)  # nothing written
    finally: live.kill(); live.wait()
    said = []
    with run_lock(run, log=said.append) as lock:  # the holder is gone now
        assert lock.read_text() == str(os.getpid()) and said == [f'taking over {lock}: its process {live.pid} is gone']
    assert not lock.exists() and sorted(p.name for p in run.iterdir()) == []
