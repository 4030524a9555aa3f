"Bad recipe values fail before any stage runs: one line naming the key and the recipe, exit status 2, nothing written."
import pytest
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
