"Scale: training on two processes, resuming killed runs and interrupted training, sweeps, recipes and the Slurm template."
import json, os, random, subprocess, time
from pathlib import Path
import pytest, yaml
from synthbook.core import TINY_MODEL, Config, batch_plan, load_recipe
from synthbook.data import write_jsonl
from synthbook.dpo import train_policy
from synthbook.feedback import make_pair
from synthbook.run import ChainError, launch
from conftest import ROOT, BIN, TINY_SIZES, tiny_chain

def write_pairs(d:Path, n_train:int=8, n_heldout:int=4):
    pair = lambda i, split: make_pair({'prompt': f'Name a colour, please ({i}).'}, f'Blue, the colour of the sky ({i}).',
                                      'I do not know.', 'almost', split=split)
    write_jsonl([pair(i, 'train') for i in range(n_train)], d/'pairs_train.jsonl')
    write_jsonl([pair(100 + i, 'heldout') for i in range(n_heldout)], d/'pairs_heldout.jsonl')

def tiny(d:Path, **kw) -> Config:
    return Config(**{'model': TINY_MODEL, 'device': 'cpu', 'dtype': 'float32', 'run_dir': str(d), 'dpo_train_pairs': 0, **kw})

def test_dpo_trains_on_two_gloo_processes(tmp_path):
    write_pairs(tmp_path)
    lines = []
    result = launch('synthbook.dpo:train_policy', tiny(tmp_path, num_processes=2, global_batch_size=4, device_batch_size=4), log=lines.append)
    ranks = [json.loads((tmp_path/'jobs'/f'dpo_rank{r}.json').read_text()) for r in (0, 1)]
    assert [r['rank'] for r in ranks] == [0, 1] and {(r['processes'], r['backend']) for r in ranks} == {(2, 'gloo')}
    assert ranks[0]['steps'] == ranks[1]['steps'] == 2 and {r['global batch'] for r in ranks} == {4}  # 8 pairs, 4 a step
    assert result['batch'] == {'per device': 2, 'accumulation': 1, 'processes': 2, 'global': 4}  # 4 pairs a step, split over 2
    assert (tmp_path/'policy'/'synthbook_adapter.json').exists() and result['reload_max_diff'] < 1e-3
    assert any('dpo rank ' in l for l in lines)  # the launched job's log reached the caller

def test_launch_failure_is_one_line(tmp_path):
    with pytest.raises(ChainError, match=r"synthbook.dpo:train_policy failed under accelerate launch \(2 processes, exit code \d+\): .*pairs_train.jsonl"):
        launch('synthbook.dpo:train_policy', tiny(tmp_path, num_processes=2), log=lambda s: None)
    with pytest.raises(ChainError, match='accelerate_config .*nope.yaml does not exist'):
        launch('synthbook.dpo:train_policy', tiny(tmp_path, num_processes=2, accelerate_config='nope.yaml'))

def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    write_pairs(tmp_path)
    cfg = tiny(tmp_path, checkpoint_steps=1, global_batch_size=2, device_batch_size=2)
    first = train_policy(cfg, progress=False)
    assert first['steps'] == 4 and first['resumed_from'] is None
    ckpts = sorted((tmp_path/'dpo_checkpoints').glob('checkpoint-*'), key=lambda p: int(p.name.split('-')[1]))
    assert [p.name for p in ckpts] == ['checkpoint-3', 'checkpoint-4']  # save_total_limit keeps the last two
    import shutil
    shutil.rmtree(ckpts[-1])  # as if the job died between step 3 and step 4
    again = train_policy(cfg, progress=False)
    assert again['resumed_from'] == 'checkpoint-3' and again['steps'] == 4

def kill_tree(pid:int):
    "SIGKILL a process and every process below it (papermill's kernels run in sessions of their own)."
    import psutil
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for q in procs:
        try: q.kill()
        except psutil.NoSuchProcess: pass
    psutil.wait_procs(procs, timeout=30)

def results_of(run_dir:Path) -> dict:
    ("Every artifact of a finished run by its path: the bytes, or for a JSON file with a `timings` block the data "
     "without it. run.json, timings.md and the executed notebooks record the run itself, not its results.")
    out = {}
    for p in sorted(run_dir.rglob('*')):
        rel = p.relative_to(run_dir)
        if not p.is_file() or rel.parts[0] == 'notebooks' or p.name in ('run.json', 'timings.md'): continue
        data = p.read_bytes()
        if p.suffix == '.json' and b'"timings"' in data:
            data = {k: v for k, v in json.loads(data).items() if k != 'timings'}
        out[str(rel)] = data
    return out

def test_a_run_killed_inside_every_stage_resumes_to_the_same_artifacts(tiny_prefix, tmp_path):
    import shutil
    reference, out = tmp_path/'uninterrupted', tmp_path/'killed'
    shutil.copytree(tiny_prefix, reference)  # chapters 00-02 of a run never killed; the rest runs here
    r = subprocess.run(tiny_chain(reference), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    stages = json.loads((reference/'run.json').read_text())['stages']
    assert [s for s, v in stages.items() if v.get('skipped')] == ['00_core', '01_data', '02_generate']
    seconds = {s: v['seconds'] for s, v in stages.items()}
    seed = random.randrange(10**6)  # a new moment on every run of the test; a failure names its seed
    rng, killed = random.Random(seed), {}
    for i, stage in enumerate(seconds):  # run, kill inside this stage, and let the next run redo it
        p = subprocess.Popen(tiny_chain(out), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, 'PYTHONUNBUFFERED': '1'})
        try:
            said = []
            for line in p.stdout:
                said.append(line)
                if line.startswith(f'[{stage}] running'): break
            assert said and said[-1].startswith(f'[{stage}] running'), f'seed {seed}: {stage} never started: {said}'
            assert i == 0 or any('taking over' in l for l in said), said  # the killed run's lock
            # 00-02's seconds are the prefix's first run, on a cold compile cache: chapter 00 took 44 s or more there
            # and 18.9 s warm in one make test, so the kill comes within the first 30 % of a stage's recorded time
            delay = rng.uniform(0.05, 0.3) * seconds[stage]
            time.sleep(delay)
            assert p.poll() is None, f'seed {seed}: the run ended within {delay:.1f} s of starting {stage}'
            kill_tree(p.pid)  # the runner and its kernel, at once
            killed[stage] = round(delay, 1)
        finally:
            if p.poll() is None: kill_tree(p.pid)
            p.wait()
        done = json.loads((out/'run.json').read_text())['stages'] if (out/'run.json').exists() else {}
        assert stage not in done, f'seed {seed}: {stage} finished before the kill at {delay:.1f} s'
    r = subprocess.run(tiny_chain(out), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [l.split(']')[0][1:] for l in r.stdout.splitlines() if 'skipped' in l] == list(seconds)[:-1]
    got, want = results_of(out), results_of(reference)
    assert sorted(got) == sorted(want), f'seed {seed}, killed at {killed}'
    differ = [f for f in want if got[f] != want[f]]
    assert not differ, f'seed {seed}, killed at {killed}: {differ}'
    assert len(killed) == 8 and any(f.endswith('adapter_config.json') for f in want)

def test_a_changed_parameter_reruns_its_stage_and_those_after_it(from_tiny_prefix):
    out, stages = from_tiny_prefix, '00_core,01_data,02_generate'
    r = subprocess.run(tiny_chain(out, '--stages', stages, '--set', 'top_p=0.9'), cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0 and '[01_data] skipped' in r.stdout and '[02_generate] done' in r.stdout, r.stdout
    (out/'generations.jsonl').write_text('')  # an artifact altered by hand: its stage runs again and says why
    r = subprocess.run(tiny_chain(out, '--stages', stages, '--set', 'top_p=0.9'), cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert '[02_generate] running (changed since it ran: generations.jsonl)' in r.stdout, r.stdout

def test_sweep_runs_one_point_per_value_from_a_finished_run(tiny_prefix, tmp_path):
    base = tiny_prefix  # chapters 00-02, finished; the sweep copies it and leaves it as it was
    r = subprocess.run([str(BIN/'synthbook'), 'sweep', 'recipes/smoke.yaml', '--set', 'model=tiny-random',
                        '--set', 'n_prompts=12', '--set', 'dtype=float32', *TINY_SIZES,  # as the tiny prefix ran
                        '--stages', '00_core,01_data,02_generate', '--grid', 'max_new_tokens=4,6', '--from', str(base),
                        '--run-dir', str(tmp_path/'sw')], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path/'sw'/'sweep'/'sweep.json').read_text())
    assert [(row['max_new_tokens'], row['ran']) for row in rows] == [(4, ['02_generate']), (6, ['02_generate'])]
    assert (tmp_path/'sw'/'sweep'/'sweep.md').read_text().count('02_generate') == 2

def test_recipes_hold_the_global_batch_on_their_hardware():
    recipes = sorted((ROOT/'recipes').glob('*.yaml'))
    gpu = [p for p in recipes if p.name.startswith('gpu-')]
    assert {p.stem for p in gpu} >= {'gpu-1x-qlora', 'gpu-8x-ddp', 'gpu-8x-zero3', 'gpu-8x-fsdp'}
    for p in recipes:
        cfg = load_recipe(p)
        plan = batch_plan(cfg.global_batch_size, cfg.device_batch_size, cfg.num_processes)
        assert plan['per device'] * plan['accumulation'] * plan['processes'] == cfg.global_batch_size, p.name
        if cfg.accelerate_config:
            acc = yaml.safe_load((ROOT/cfg.accelerate_config).read_text())
            assert acc['num_processes'] == cfg.num_processes and acc['distributed_type'] in ('MULTI_GPU', 'DEEPSPEED', 'FSDP'), p.name
    assert {load_recipe(p).global_batch_size for p in gpu} == {64}  # one experiment, four hardware layouts
    assert {yaml.safe_load((ROOT/load_recipe(p).accelerate_config).read_text())['distributed_type'] for p in gpu if load_recipe(p).accelerate_config} == {'MULTI_GPU', 'DEEPSPEED', 'FSDP'}

def test_slurm_template_is_valid_bash_and_runs_a_recipe():
    f = ROOT/'slurm'/'synthbook.sbatch'
    assert subprocess.run(['bash', '-n', str(f)]).returncode == 0
    text = f.read_text()
    assert '#SBATCH --gpus-per-node=' in text and 'synthbook run "${RECIPE}"' in text
    default = text.split('RECIPE="${RECIPE:-')[1].split('}')[0]
    assert (ROOT/default).exists()
