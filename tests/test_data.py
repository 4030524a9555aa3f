import json, re
import pytest
from synthbook.core import Config
from synthbook.data import (DataError, read_jsonl, write_jsonl, check_pair, to_dataset, from_dataset, load_prompts,
                            split_rows, sample_rows, load_pairs, labelled_pairs)
from conftest import SHARED

PAIR = dict(prompt='p', chosen='good answer', rejected='bad answer')

def lines(tmp_path, *rows, name='x.jsonl'):
    p = tmp_path/name
    p.write_text(''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in rows))
    return p

@pytest.mark.skipif(not (SHARED/'preference_pairs.jsonl').exists(), reason='shared human data not present')
def test_reads_every_human_pair():
    rows = read_jsonl(SHARED/'preference_pairs.jsonl')
    assert len(rows) == 1036
    assert {r['source'].split('/')[0] for r in rows} == {'hh-rlhf', 'llmbar-processed', 'xstest'}
    prompts = read_jsonl(SHARED/'prompts.jsonl', kind='prompts')
    assert len(prompts) == 1981
    train, held = split_rows(rows, 0.2, seed=0)
    assert not {r['prompt'] for r in train} & {r['prompt'] for r in held}  # split by prompt, never by row
    assert 0.1 < len(held) / len(rows) < 0.3

@pytest.mark.parametrize('row,msg', [
    ('{"prompt": "p", "chosen"', "x.jsonl:2: not valid JSON"),
    ('[1, 2]', "x.jsonl:2: expected a JSON object, got list"),
    (dict(prompt='p', chosen='a'), "x.jsonl:2: missing field 'rejected'"),
    (dict(PAIR, chosen='  '), "x.jsonl:2: field 'chosen' is empty"),
    (dict(PAIR, rejected='good answer'), "x.jsonl:2: 'chosen' is identical to 'rejected'"),
    (dict(PAIR, chosen=3), "x.jsonl:2: field 'chosen' must be text or a list of chat messages, got int"),
    (dict(PAIR, score_chosen='high'), "x.jsonl:2: field 'score_chosen' must be a number"),
    (dict(PAIR, prompt=[{'role': 'wizard', 'content': 'hi'}]),
     "x.jsonl:2: field 'prompt' message 1 has role 'wizard'; roles are system, user, assistant"),
    (dict(PAIR, prompt=[{'role': 'system', 'content': 's'}, {'role': 'user'}]),
     "x.jsonl:2: field 'prompt' message 2 (user) has no text 'content'"),
    (dict(PAIR, chosen=[{'role': 'user', 'content': 'a reply written as the user'}]),
     "x.jsonl:2: field 'chosen' must end with an assistant message, not 'user'"),
    (dict(PAIR, rejected=[]), "x.jsonl:2: field 'rejected' is an empty list of messages"),
    (dict(PAIR, prompt=['hi']), "x.jsonl:2: field 'prompt' message 1 must be an object"),
])
def test_bad_rows_fail_with_file_and_line(tmp_path, row, msg):
    p = lines(tmp_path, PAIR, row, PAIR)
    with pytest.raises(DataError, match=re.escape(msg)): read_jsonl(p)

def test_bytes_that_are_not_utf8_name_the_line_and_a_byte_order_mark_is_accepted(tmp_path):
    good = json.dumps(PAIR).encode()
    p = tmp_path/'latin1.jsonl'
    p.write_bytes(good + b'\n' + json.dumps(dict(PAIR, chosen='caf\u00e9')).encode().replace(b'\\u00e9', b'\xe9') + b'\n')
    with pytest.raises(DataError, match=r'latin1.jsonl:2: not UTF-8 text \(byte 0xe9 at column'): read_jsonl(p)
    (tmp_path/'bom.jsonl').write_bytes(b'\xef\xbb\xbf' + good + b'\n' + good + b'\n')
    assert read_jsonl(tmp_path/'bom.jsonl') == [PAIR, PAIR]
    (tmp_path/'bom2.jsonl').write_bytes(good + b'\n\xef\xbb\xbf' + good + b'\n')  # only a file's first bytes may be one
    with pytest.raises(DataError, match='bom2.jsonl:2: not valid JSON'): read_jsonl(tmp_path/'bom2.jsonl')

def test_blank_lines_are_not_rows_but_empty_files_fail(tmp_path):
    assert read_jsonl(lines(tmp_path, PAIR, '', PAIR)) == [PAIR, PAIR]
    with pytest.raises(DataError, match='no rows'): read_jsonl(lines(tmp_path, '', name='e.jsonl'))

def test_chat_message_pairs():
    msgs = [{'role': 'assistant', 'content': 'hi'}]
    assert check_pair(dict(PAIR, chosen=msgs))['chosen'] == msgs
    with pytest.raises(DataError, match=re.escape("field 'chosen' message 1 (assistant) has no text 'content'")):
        check_pair(dict(PAIR, chosen=[{'role': 'assistant'}]))

def test_write_checks_first_and_never_overwrites_silently(tmp_path):
    p = tmp_path/'out.jsonl'
    with pytest.raises(DataError, match=r"out.jsonl row 1: missing field 'rejected'"):
        write_jsonl([PAIR, dict(prompt='p', chosen='c')], p)
    assert not p.exists()
    write_jsonl([PAIR], p)
    with pytest.raises(DataError, match='exists; pass overwrite=True'): write_jsonl([PAIR, PAIR], p)
    assert read_jsonl(p) == [PAIR]
    with pytest.raises(DataError, match='empty dataset'): write_jsonl([], tmp_path/'e.jsonl')

def test_dataset_round_trip_and_mixed_formats():
    rows = [dict(PAIR, source='s'), dict(PAIR, score_chosen=1.0, score_rejected=0.0)]
    assert from_dataset(to_dataset(rows)) == rows
    with pytest.raises(DataError, match="field 'chosen' mixes plain text and chat messages"):
        to_dataset([PAIR, dict(PAIR, chosen=[{'role': 'assistant', 'content': 'x'}])])

def test_shipped_prompt_sets():
    general = load_prompts()
    cats = {r['category'] for r in general}
    assert len(general) >= 200 and cats >= {'writing', 'advice', 'reasoning', 'coding', 'safety'}
    assert len({r['prompt'] for r in general}) == len(general)
    pe = load_prompts('synthbook:pink-elephants')
    assert len(pe) >= 40 and all(r['avoid'] and r['prefer'] and r['avoid'] != r['prefer'] for r in pe)

def test_sampling_is_nested_and_order_free():
    rows = load_prompts()
    assert sample_rows(rows, 10, seed=3) == sample_rows(rows, 20, seed=3)[:10] == sample_rows(rows[::-1], 10, seed=3)
    assert sample_rows(rows, 10, seed=3) != sample_rows(rows, 10, seed=4)
    with pytest.raises(DataError, match='asked for 300 prompts but synthbook:general has only 225'): load_prompts(n=300)

def test_split_is_deterministic_and_disjoint():
    rows = load_prompts()
    train, held = split_rows(rows, 0.25, seed=0)
    assert len(train) + len(held) == len(rows) and not {r['prompt'] for r in train} & {r['prompt'] for r in held}
    assert (train, held) == split_rows(rows, 0.25, seed=0)
    assert 0.15 < len(held) / len(rows) < 0.35
    with pytest.raises(DataError, match='heldout_fraction'): split_rows(rows, 1.5)

def test_hub_prompt_source_checks_column(monkeypatch):
    import datasets
    ds = datasets.Dataset.from_list([{'question': 'q1'}, {'question': 'q2'}])
    monkeypatch.setattr(datasets, 'load_dataset', lambda src, split: ds)
    assert [r['prompt'] for r in load_prompts('org/set', column='question')] == ['q1', 'q2']
    with pytest.raises(DataError, match="org/set split 'train' has no column 'prompt'; columns: question"):
        load_prompts('org/set')

def test_hub_prompt_source_failure_is_one_line(monkeypatch):
    import datasets
    def boom(src, split): raise ConnectionError('no network\nlong trace')
    monkeypatch.setattr(datasets, 'load_dataset', boom)
    with pytest.raises(DataError, match=r"^could not load prompts 'org/set' split 'train': no network$"): load_prompts('org/set')

def test_labelled_pairs_end_in_the_runs_line_and_keep_their_answers(tmp_path):
    rows = [dict(prompt='Capital of France?', chosen='Paris.', rejected='Lyon.'),
            dict(prompt=[{'role': 'user', 'content': '2 + 2?'}], chosen='4', rejected='5')]
    path = lines(tmp_path, *rows)
    line = 'Answer in one sentence.'
    got = labelled_pairs(Config(eval_pairs=str(path), prompt_instruction=line))
    assert [p['prompt'] for p in got] == ['Capital of France?\nAnswer in one sentence.',
                                          [{'role': 'user', 'content': '2 + 2?\nAnswer in one sentence.'}]]
    assert [(p['chosen'], p['rejected']) for p in got] == [('Paris.', 'Lyon.'), ('4', '5')]
    assert labelled_pairs(Config(eval_pairs=str(path), prompt_instruction='')) == load_pairs(str(path))  # no line
    shipped = labelled_pairs(Config(n_eval_pairs=6, prompt_instruction=line))  # sampled as load_pairs samples
    assert [p['chosen'] for p in shipped] == [p['chosen'] for p in load_pairs(n=6)]
