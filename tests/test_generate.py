import sys, types
import pytest, torch
import synthbook.generate as G
from synthbook.core import load_model, TINY_MODEL, Config

@pytest.fixture(scope='module')
def tiny():
    return load_model(TINY_MODEL, dtype='float32')

def test_shapes_and_seeded_determinism(tiny):
    be = G.TransformersBackend(*tiny, batch_size=2, progress=False)
    prompts = ['one', {'prompt': 'two'}, [{'role': 'user', 'content': 'three'}]]
    a = be.generate(prompts, n=3, max_new_tokens=8, temperature=1.0, seed=5)
    assert [len(r) for r in a] == [3, 3, 3] and all(isinstance(x, str) for r in a for x in r)
    assert be.generate(prompts, n=3, max_new_tokens=8, temperature=1.0, seed=5) == a
    assert be.generate(prompts, n=3, max_new_tokens=8, temperature=1.0, seed=6) != a
    assert be.stats['prompts'] == 9 and be.stats['sequences'] == 27 and 0 < be.stats['new_tokens'] <= 27 * 8
    assert be.throughput() > 0

def test_left_padding_and_greedy(tiny):
    be = G.TransformersBackend(*tiny, batch_size=4, progress=False)
    assert be.tok.padding_side == 'left'
    a = be.generate(['short', 'a much longer prompt with many more words in it'], max_new_tokens=6, temperature=0)
    assert a == be.generate(['short', 'a much longer prompt with many more words in it'], max_new_tokens=6, temperature=0)
    with pytest.raises(ValueError, match='greedy'): be.generate(['x'], n=2, temperature=0)
    assert be.generate([], n=2) == []

def test_loop_backend_matches_generate_greedy_and_is_seeded(tiny):
    "The decode loop (shared prefix, prompts read once, finished rows dropped) gives model.generate's greedy text in fp32."
    prompts = ['short', 'a much longer prompt with many more words in it', [{'role': 'user', 'content': 'three'}], 'four']
    stock, loop = G.TransformersBackend(*tiny, batch_size=3, progress=False), G.LoopBackend(*tiny, batch_size=3, progress=False)
    assert loop.generate(prompts, max_new_tokens=12, temperature=0) == stock.generate(prompts, max_new_tokens=12, temperature=0)
    a = loop.generate(prompts, n=3, max_new_tokens=8, temperature=1.0, seed=5)
    assert [len(r) for r in a] == [3] * 4 and a == loop.generate(prompts, n=3, max_new_tokens=8, temperature=1.0, seed=5)
    assert a != loop.generate(prompts, n=3, max_new_tokens=8, temperature=1.0, seed=6)
    assert loop.stats['sequences'] == 4 + 3 * 12 and 0 < loop.stats['new_tokens'] <= (4 + 36) * 12
    assert tiny[0].config._attn_implementation == 'sdpa'  # the loop's attention is switched back off afterwards

def test_nucleus_is_transformers_sampling_distribution():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    logits = torch.randn(3, 500, generator=torch.Generator().manual_seed(0)) * 4
    for top_k in (50, 0):
        probs, ids = G.nucleus(logits, 0.7, top_k, 0.9)
        ref = TemperatureLogitsWarper(0.7)(None, logits)
        ref = TopPLogitsWarper(0.9)(None, TopKLogitsWarper(top_k)(None, ref) if top_k else ref).softmax(-1)
        assert torch.allclose(torch.zeros_like(logits).scatter(-1, ids, probs), ref, atol=1e-6)
    assert G.common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2 and G.common_prefix_length([[4], [5, 6]]) == 0

def test_system_message_goes_first():
    msgs = G.as_messages('q', system='be brief')
    assert msgs == [{'role': 'system', 'content': 'be brief'}, {'role': 'user', 'content': 'q'}]

def test_backend_choice(monkeypatch):
    monkeypatch.setattr(G, 'vllm_available', lambda: False)
    assert G.pick_backend('auto') == 'loop' and G.pick_backend('transformers') == 'transformers'
    with pytest.raises(ValueError, match="backend 'vllm' needs the vllm package and a CUDA GPU"): G.pick_backend('vllm')
    with pytest.raises(ValueError, match='backend must be'): G.pick_backend('tgi')
    monkeypatch.setattr(G, 'vllm_available', lambda: True)
    assert G.pick_backend('auto') == 'vllm' and G.pick_backend('transformers') == 'transformers'

def test_vllm_backend_maps_requests_and_outputs(monkeypatch):
    "A stand-in vllm module records what the backend asks for; the real engine needs CUDA."
    calls = {}
    class SamplingParams:
        def __init__(self, **kw): calls['sampling'] = kw
    class LLM:
        def __init__(self, **kw): calls['llm'] = kw
        def chat(self, convs, sp, use_tqdm):
            calls['convs'] = convs
            out = lambda t: types.SimpleNamespace(text=f' {t} ', token_ids=[1] * len(t),
                                                  finish_reason='length' if len(t) > 2 else 'stop')
            return [types.SimpleNamespace(outputs=[out('ab'), out('cde')]) for _ in convs]
    monkeypatch.setitem(sys.modules, 'vllm', types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    be = G.VLLMBackend('/models/x', dtype='bfloat16', tensor_parallel_size=2, seed=3)
    res = be.generate(['q1', 'q2'], n=2, max_new_tokens=16, temperature=0.5, top_p=0.9, seed=3, system='s')
    assert res == [['ab', 'cde'], ['ab', 'cde']]
    assert calls['llm'] == dict(model='/models/x', dtype='bfloat16', tensor_parallel_size=2, gpu_memory_utilization=0.85, seed=3)
    assert calls['sampling'] == dict(n=2, temperature=0.5, top_p=0.9, max_tokens=16, seed=3)
    assert calls['convs'][0] == [{'role': 'system', 'content': 's'}, {'role': 'user', 'content': 'q1'}]
    assert be.stats['new_tokens'] == 10
    assert be.last_truncated == [[False, True], [False, True]] and be.stats['truncated'] == 2

def test_generation_rows_carry_provenance(tiny):
    be = G.TransformersBackend(*tiny, progress=False)
    cfg = Config(model=TINY_MODEL, n_samples=2)
    rows = G.generation_rows([{'prompt': 'p', 'category': 'c'}], [['r0', 'r1']], cfg, be)
    assert [(r['sample'], r['response'], r['category'], r['model'], r['backend']) for r in rows] == \
           [(0, 'r0', 'c', TINY_MODEL, 'transformers'), (1, 'r1', 'c', TINY_MODEL, 'transformers')]
    assert [r['truncated'] for r in rows] == [None, None]  # not what the backend's last call returned: unknown

def test_every_backend_records_which_responses_hit_max_new_tokens(tiny):
    "The random tiny model never ends its turn within 3 tokens, so every response is cut off; the counts agree."
    cfg = Config(model=TINY_MODEL, max_new_tokens=3)
    for be in (G.TransformersBackend(*tiny, progress=False), G.LoopBackend(*tiny, progress=False)):
        out = be.generate(['Hi there', 'Name a colour'], n=2, max_new_tokens=3, temperature=0.7)
        assert be.last_truncated == [[True, True], [True, True]] and be.stats['truncated'] == 4
        assert all(t in be.truncated_texts for rs in out for t in rs)
        rows = G.generation_rows([{'prompt': 'Hi there'}, {'prompt': 'Name a colour'}], out, cfg, be)
        assert [r['truncated'] for r in rows] == [True] * 4
