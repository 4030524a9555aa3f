import pytest, torch
from synthbook.core import (load_model, resolve_model, ModelError, pick_dtype, pick_device, bundled_model_dir, add_lora,
                            plain_copy, TINY_MODEL, Config, seed_everything)

def test_bundled_model_is_cached_as_bf16_safetensors():
    d = bundled_model_dir()
    assert (d/'model.safetensors').exists() and (d/'tokenizer.json').exists() and (d/'chat_template.jinja').exists()
    assert bundled_model_dir() == d  # converted once

def test_tiny_model_has_the_real_tokenizer_and_chat_template():
    m, tok = load_model(TINY_MODEL, dtype='float32')
    assert m.config.num_hidden_layers == 2 and m.config.hidden_size == 64
    assert m.config.vocab_size == len(tok) == 49152
    text = tok.apply_chat_template([{'role': 'user', 'content': 'hi'}], tokenize=False, add_generation_prompt=True)
    assert text.endswith('<|im_start|>assistant\n')

def test_tiny_model_is_deterministic():
    a, _ = load_model(TINY_MODEL, dtype='float32'); b, _ = load_model(TINY_MODEL, dtype='float32')
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

@pytest.mark.parametrize('spec,msg', [('/no/such/dir', 'model path /no/such/dir does not exist'),
                                      ('./rel/missing', 'model path ./rel/missing does not exist')])
def test_missing_model_paths_fail_in_one_line(spec, msg):
    with pytest.raises(ModelError, match=f'^{msg}$'): load_model(spec)

def test_folder_without_config_fails(tmp_path):
    with pytest.raises(ModelError, match='has no config.json'): resolve_model(str(tmp_path))

def test_unknown_hub_id_offline_fails_in_one_line(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)  # read once at import; `make test` sets the variable
    with pytest.raises(ModelError, match=r"^could not load model 'nobody/no-such-model-xyz': "):
        load_model('nobody/no-such-model-xyz')

def test_dtype_and_device_choices():
    assert pick_dtype('float32') == torch.float32 and pick_dtype('bfloat16') == torch.bfloat16
    assert pick_dtype('auto', 'cpu') in (torch.bfloat16, torch.float32)
    with pytest.raises(ModelError, match='dtype must be'): pick_dtype('fp8')
    with pytest.raises(ModelError, match='device must be'): pick_device('tpu')
    if not torch.cuda.is_available():
        assert pick_device('auto') == 'cpu'
        with pytest.raises(ModelError, match='CUDA is not available'): pick_device('cuda')

def test_4bit_nf4_double_quant_and_qlora_backward_on_cpu():
    import bitsandbytes as bnb
    m, tok = load_model(TINY_MODEL, device='cpu', dtype='bfloat16', load_in_4bit=True, lora_r=8)
    q = m.base_model.model.config.quantization_config
    assert q.bnb_4bit_quant_type == 'nf4' and q.bnb_4bit_use_double_quant and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert sum(isinstance(x, bnb.nn.Linear4bit) for x in m.modules()) > 0
    batch = tok(['a small test'], return_tensors='pt')
    m(**batch, labels=batch['input_ids']).loss.backward()
    with_grad = [n for n, p in m.named_parameters() if p.grad is not None]
    assert with_grad and all('lora_' in n for n in with_grad)

def test_lora_starts_at_the_base_model():
    seed_everything(0)
    m, tok = load_model(TINY_MODEL, dtype='float32')
    batch = tok(['same output before training'], return_tensors='pt')
    with torch.no_grad(): base = m(**batch).logits
    peft_model = add_lora(m, r=4)
    with torch.no_grad(): adapted = peft_model(**batch).logits
    assert torch.allclose(base, adapted)
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert 0 < trainable < total

def test_plain_copy_merges_or_drops_the_adapter_and_leaves_the_model_alone():
    base, _ = load_model(TINY_MODEL, dtype='float32')
    torch.manual_seed(0)
    tuned = add_lora(load_model(TINY_MODEL, dtype='float32')[0], r=4, alpha=8)
    with torch.no_grad():
        for n, p in tuned.named_parameters():
            if 'lora_B' in n: p.normal_(0, 0.5)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    merged, dropped = plain_copy(tuned), plain_copy(tuned, with_adapter=False)
    with torch.no_grad():
        peft_out, merged_out = tuned(input_ids=ids).logits, merged(input_ids=ids).logits
        assert (peft_out - merged_out).abs().max() < 1e-4 and (peft_out - base(input_ids=ids).logits).abs().max() > 1e-2
        assert torch.equal(dropped(input_ids=ids).logits, base(input_ids=ids).logits)
    assert not hasattr(merged, 'peft_config') and not hasattr(dropped, 'peft_config')
    assert any('lora_B' in n for n, _ in tuned.named_parameters())  # the peft model keeps its adapter
    assert plain_copy(base) is base
    calls, inner = [], tuned.get_base_model()
    original = inner.forward
    inner.forward = lambda *a, **k: calls.append(1) or original(*a, **k)  # as a trainer's wrapper leaves it
    with torch.no_grad(): plain_copy(tuned)(input_ids=ids)
    assert not calls  # the copy runs its own weights, not the original model through a copied closure
    half = add_lora(load_model(TINY_MODEL, dtype='bfloat16')[0], r=4, alpha=8)
    assert plain_copy(half) is half and plain_copy(half, with_adapter=False) is not half

def test_a_damaged_model_cache_is_noticed_and_rebuilt_from_the_gguf(tmp_path, monkeypatch, capsys):
    import shutil
    from synthbook.core import cache_problem
    real = bundled_model_dir()
    monkeypatch.setenv('SYNTHBOOK_CACHE', str(tmp_path))
    cached = tmp_path/'models'/real.name
    shutil.copytree(real, cached)
    assert bundled_model_dir() == cached and cache_problem(cached) is None
    weights = cached/'model.safetensors'
    with open(weights, 'r+b') as f:
        f.seek(4096)
        f.write(b'\x00\x01\x02')  # altered in place, same size
    assert cache_problem(cached) == f'{weights} was altered: its SHA-256 is not the one written'
    with open(weights, 'r+b') as f: f.truncate(1000)
    assert bundled_model_dir() == cached  # rebuilt from the GGUF
    err = capsys.readouterr().err
    assert f'{weights} has 1000 bytes, not the {(real/"model.safetensors").stat().st_size}' in err and 'rebuilding' in err
    assert cache_problem(cached) is None and weights.stat().st_size == (real/'model.safetensors').stat().st_size

def test_training_kernels_compile_the_decoder_layers_without_changing_the_loss_and_restore_the_model():
    from synthbook.core import cpu_compiler, decoder_layers, training_kernels
    seed_everything(0)
    model = add_lora(load_model(TINY_MODEL, dtype='float32')[0])
    for name, p in model.named_parameters():  # a nonzero update, so that the adapters' gradients flow everywhere
        if 'lora_B' in name: p.data.normal_(0, 0.02)
    ids = torch.randint(100, 1000, (2, 24), generator=torch.Generator().manual_seed(0))
    def loss_and_grads():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        return loss.item(), grads
    layers = decoder_layers(model)
    assert len(layers) == model.config.num_hidden_layers == 2
    with training_kernels(model, compile_layers=False):
        assert {layer._compiled_call_impl for layer in layers} == {None}
        eager_loss, eager_grads = loss_and_grads()
    with training_kernels(model):
        assert model.config.use_cache is False and model.config._attn_implementation == 'eager'
        assert {layer._compiled_call_impl is not None for layer in layers} == {cpu_compiler()}
        compiled_loss, compiled_grads = loss_and_grads()
    assert {layer._compiled_call_impl for layer in layers} == {None}
    assert model.config.use_cache is True and model.config._attn_implementation != 'eager'
    assert abs(compiled_loss - eager_loss) < 1e-5
    assert all(torch.allclose(compiled_grads[n], g, atol=1e-5, rtol=1e-3) for n, g in eager_grads.items())
