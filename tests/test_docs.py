"The docs check (`make docs-check`) finds what would break the site, and the committed notebooks pass its static part."
import json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
import docs_check as dc


def notebook(path, *cells):
    "Write a notebook of (cell_type, source, outputs) cells to `path`."
    nb = {'cells': [{'cell_type': kind, 'source': src, 'metadata': {}, **({'outputs': outs, 'execution_count': None}
                                                                          if kind == 'code' else {})}
                    for kind, src, outs in cells], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))
    return path


def test_slug_is_pandocs_identifier():
    assert dc.slug('At full scale') == 'at-full-scale'
    assert dc.slug('1. The `dpo_loss`, checked!') == 'the-dpo_loss-checked'
    assert dc.slug('[GenRM](https://x.org) vs BT') == 'genrm-vs-bt'


def test_links_to_missing_pages_and_anchors_are_named(tmp_path):
    target = notebook(tmp_path/'04_rm.ipynb', ('markdown', '# Reward models\n## At full scale {#scale}', []),
                      ('code', '#| export\ndef train_reward_model(): pass', []))
    page = notebook(tmp_path/'03_fb.ipynb', ('markdown', 'see [a](04_rm.ipynb#reward-models), [b](04_rm.html#scale),'
                                             ' [c](04_rm.ipynb#train_reward_model), [d](https://example.org#x)', []),
                    ('markdown', '[e](05_gone.ipynb) and [f](04_rm.ipynb#nowhere) and [g](#also-nowhere)', []))
    assert dc.anchors(target) == {'reward-models', 'scale', 'train_reward_model'}
    problems = dc.link_problems(page, nbs=tmp_path)
    assert problems == ['03_fb.ipynb, cell 1: link 05_gone.ipynb (05_gone.ipynb does not exist)',
                        '03_fb.ipynb, cell 1: link 04_rm.ipynb#nowhere (no #nowhere in 04_rm.ipynb)',
                        '03_fb.ipynb, cell 1: link #also-nowhere (no #also-nowhere in 03_fb.ipynb)']


def test_error_stderr_and_warning_outputs_are_named(tmp_path):
    nb = notebook(tmp_path/'x.ipynb',
                  ('code', 'ok', [{'output_type': 'stream', 'name': 'stdout', 'text': 'accuracy 0.83 (n = 59)\n'}]),
                  ('code', 'boom', [{'output_type': 'error', 'ename': 'NameError', 'evalue': "name 'labelled' is "
                                     "not defined", 'traceback': []}]),
                  ('code', 'log', [{'output_type': 'stream', 'name': 'stderr', 'text': 'Map: 100%|##########|\n'}]),
                  ('code', 'warn', [{'output_type': 'execute_result', 'execution_count': 1, 'metadata': {},
                                     'data': {'text/plain': 'FutureWarning: `x` is deprecated'}}]))
    assert dc.output_problems(nb) == ["x.ipynb, cell 1: error output NameError: name 'labelled' is not defined",
                                      "x.ipynb, cell 2: stderr: 'Map: 100%|##########|'",
                                      "x.ipynb, cell 3: output holds 'FutureWarning'"]


def test_sidebar_entries_are_read(tmp_path):
    yml = tmp_path/'_quarto.yml'
    yml.write_text('website:\n  sidebar:\n    contents:\n      - index.ipynb\n      - section: Chapters\n'
                   '        contents:\n          - 00_core.ipynb\n')
    assert dc.sidebar_entries(yml) == ['index.ipynb', '00_core.ipynb']


def test_committed_notebooks_pass_the_static_checks(capsys):
    assert dc.main(static=True) == 0, capsys.readouterr().out
