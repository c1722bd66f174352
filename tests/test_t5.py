"""T5 text encoder wrapper and tokenizers (tiny random T5s, local files only)."""
from __future__ import annotations

import io
import json

import pytest
import torch

from audiox_core.conditioning.t5 import T5_BASE, T5TextEncoder, infer_t5_config, load_tokenizer
from audiox_core.conditioning.tokenizers import ByteTokenizer, SentencePieceTokenizer
from audiox_core.errors import CheckpointError, InputError

D = 32
WORDS = ["a", "dog", "barks", "in", "the", "rain", "cat", "music", "loud"]


def _tiny_config(**kw):
    from transformers import T5Config
    base = dict(vocab_size=300, d_model=D, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, use_cache=False)
    base.update(kw)
    return T5Config(**base)


def _tiny_encoder(seed=0, **kw):
    from transformers import T5EncoderModel
    torch.manual_seed(seed)
    m = T5EncoderModel(_tiny_config(**kw)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m


def _word_tokenizer_json(path):
    """A T5-like tokenizer.json: word-level vocab, '</s>' appended by the post-processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(path))


def _expected(model, ids, mask):
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask.bool()).last_hidden_state
    return h.float() * mask[..., None].float()


@pytest.fixture()
def hf_folder(tmp_path):
    m = _tiny_encoder()
    m.save_pretrained(str(tmp_path / "t5"))
    _word_tokenizer_json(tmp_path / "t5" / "tokenizer.json")
    return tmp_path / "t5", m


def _single_file(tmp_path, m, prefix="", with_embed=False, name="t5_tiny.safetensors"):
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in m.state_dict().items()
          if with_embed or k != "encoder.embed_tokens.weight"}
    save_file({prefix + k: v for k, v in sd.items()}, str(tmp_path / name))
    return tmp_path / name


# ------------------------------------------------------------------------------------------------
def test_hf_folder_matches_direct_model(hf_folder):
    folder, m = hf_folder
    enc = T5TextEncoder.from_local(folder, expected_dim=D)
    assert enc.dtype == torch.float32 and enc.d_model == D
    prompts = ["a dog barks in the rain", "", "music"]
    tokens, mask = enc.encode(prompts, max_length=10)
    assert tokens.shape == (3, 10, D) and tokens.dtype == torch.float32 and mask.dtype == torch.bool
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 1, 0, 0, 0], [1] + [0] * 9, [10, 1] + [0] * 8])
    assert torch.equal(mask, ids != 0)
    torch.testing.assert_close(tokens, _expected(m, ids, ids != 0), rtol=0, atol=1e-6)
    assert torch.all(tokens[~mask] == 0)                 # padded rows are exactly zero
    assert torch.all(tokens[1, 0] != 0)                    # "" keeps its </s> row


def test_single_file_infers_config_and_matches_folder(tmp_path, hf_folder):
    folder, m = hf_folder
    ref = T5TextEncoder.from_local(folder, expected_dim=D)
    for prefix in ("", "text_encoders.t5base.transformer."):
        f = _single_file(tmp_path, m, prefix=prefix, name=f"f{len(prefix)}.safetensors")
        ByteTokenizer().save(tmp_path)  # a marker next to the file selects the byte tokenizer ...
        enc = T5TextEncoder.from_local(f, expected_dim=D, tokenizer_path=folder / "tokenizer.json")  # ... unless given
        c = enc.model.config
        sizes = (c.d_model, c.num_layers, c.num_heads, c.d_ff, c.d_kv, c.vocab_size, c.relative_attention_num_buckets)
        assert sizes == (D, 2, 4, 48, 8, 300, 8)
        assert enc.model.encoder.embed_tokens.weight is enc.model.shared.weight
        a, _ = enc.encode(["the cat", "loud rain"], 12)
        b, _ = ref.encode(["the cat", "loud rain"], 12)
        assert torch.equal(a, b)
    auto = T5TextEncoder.from_local(tmp_path / "f0.safetensors", expected_dim=D)
    assert isinstance(auto.tokenizer, ByteTokenizer)


def test_full_seq2seq_folder_drops_decoder(tmp_path):
    from transformers import T5ForConditionalGeneration
    torch.manual_seed(0)
    full = T5ForConditionalGeneration(_tiny_config(num_decoder_layers=1, tie_word_embeddings=False)).eval()
    full.save_pretrained(str(tmp_path / "full"))
    _word_tokenizer_json(tmp_path / "full" / "tokenizer.json")
    enc = T5TextEncoder.from_local(tmp_path / "full", expected_dim=D)
    ids = torch.tensor([[4, 5, 1, 0]])
    with torch.no_grad():
        want = full.encoder(input_ids=ids, attention_mask=ids > 0).last_hidden_state * (ids > 0)[..., None]
    got, _ = enc.encode(["dog barks"], 4)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_gated_config_inferred(tmp_path):
    m = _tiny_encoder(feed_forward_proj="gated-gelu")
    cfg = infer_t5_config({k: tuple(v.shape) for k, v in m.state_dict().items()})
    assert cfg.is_gated_act and cfg.d_ff == 48


def test_t5_base_shapes_infer_t5_base_config():
    from transformers import T5EncoderModel
    with torch.device("meta"):
        m = T5EncoderModel(_tiny_config(**{k: v for k, v in T5_BASE.items()}, relative_attention_num_buckets=32))
    cfg = infer_t5_config({k: tuple(v.shape) for k, v in m.state_dict().items()})
    assert {k: getattr(cfg, k) for k in T5_BASE} == T5_BASE and cfg.relative_attention_num_buckets == 32


def test_truncation_to_128_keeps_eos(hf_folder):
    folder, m = hf_folder
    enc = T5TextEncoder.from_local(folder, expected_dim=D)
    long = " ".join(["dog"] * 300)
    tokens, mask = enc.encode([long, "a"])
    assert tokens.shape == (2, 128, D) and bool(mask[0].all()) and int(mask[1].sum()) == 2
    ids = enc.tokenizer([long], truncation=True, max_length=128, padding="max_length", return_tensors="pt")["input_ids"]
    assert ids.shape == (1, 128) and int(ids[0, -1]) == 1 and int(ids[0, -2]) == WORDS.index("dog") + 3
    torch.testing.assert_close(tokens[:1], _expected(m, ids, torch.ones_like(ids)), rtol=0, atol=1e-6)


def test_cache_reuses_results(hf_folder, monkeypatch):
    folder, _ = hf_folder
    enc = T5TextEncoder.from_local(folder, expected_dim=D, cache_size=2)
    calls = []
    orig = enc.model.forward
    monkeypatch.setattr(enc.model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape[0]) or orig(*a, **k))
    a, _ = enc.encode(["a dog", "the cat"])
    b, _ = enc.encode(["the cat", "a dog", "the cat"])
    assert calls == [2]
    assert torch.equal(b[0], a[1]) and torch.equal(b[1], a[0]) and torch.equal(b[2], a[1])
    enc.encode(["rain"], max_length=128)  # evicts the least recently used entry
    enc.encode(["a dog"], max_length=64)  # another length is another key
    assert calls == [2, 1, 1] and len(enc._cache) == 2


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    text = "Rain on a tin roof — ça gronde 🌧"
    ids = tok.encode(text)
    assert ids[:-1] == [b + 3 for b in text.encode("utf-8")] and ids[-1] == 1
    assert tok.decode(ids) == text
    enc = tok([text, ""], max_length=8)
    assert enc["input_ids"].tolist()[1] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert enc["input_ids"][0, -1] == 1 and enc["input_ids"][0, :7].tolist() == ids[:7]  # truncation keeps EOS
    assert enc["attention_mask"].tolist() == [[1] * 8, [1] + [0] * 7]


def test_byte_tokenizer_selected_by_marker_or_byt5_config(tmp_path):
    (tmp_path / "a").mkdir()
    ByteTokenizer().save(tmp_path / "a")
    assert isinstance(load_tokenizer(tmp_path / "a"), ByteTokenizer)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    assert isinstance(load_tokenizer(tmp_path / "b"), ByteTokenizer)
    (tmp_path / "bad.json").write_text(json.dumps({"type": "byte", "offset": 4}))
    with pytest.raises(CheckpointError):
        ByteTokenizer.from_file(tmp_path / "bad.json")


def test_sentencepiece_tokenizer(tmp_path):
    import sentencepiece as spm
    buf = io.BytesIO()
    lines = ["a dog barks in the rain", "the cat sleeps", "loud music with drums"] * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=30, pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, minloglevel=2, hard_vocab_limit=False)
    (tmp_path / "spiece.model").write_bytes(buf.getvalue())
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, SentencePieceTokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "spiece.model"))
    ids = tok(["a dog barks"], max_length=16)["input_ids"][0].tolist()
    want = sp.encode("a dog barks") + [1]
    assert ids == want + [0] * (16 - len(want))


def test_errors(tmp_path, hf_folder):
    from safetensors.torch import save_file
    folder, m = hf_folder
    with pytest.raises(CheckpointError, match=r"d_model 32, expected 768"):
        T5TextEncoder.from_local(folder)
    save_file({"foo.weight": torch.zeros(2, 2)}, str(tmp_path / "junk.safetensors"))
    with pytest.raises(CheckpointError, match="not a T5"):
        T5TextEncoder.from_local(tmp_path / "junk.safetensors", expected_dim=D)
    (tmp_path / "lonely").mkdir()
    f = _single_file(tmp_path / "lonely", m)
    with pytest.raises(CheckpointError, match=r"no T5 tokenizer found.*tokenizer\.json.*spiece\.model"):
        T5TextEncoder.from_local(f, expected_dim=D)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not 't5'"):
        T5TextEncoder.from_local(folder, expected_dim=D)
    with pytest.raises(CheckpointError, match="not found"):
        T5TextEncoder.from_local(tmp_path / "nope", expected_dim=D)


def test_encode_input_errors(hf_folder):
    enc = T5TextEncoder.from_local(hf_folder[0], expected_dim=D)
    with pytest.raises(InputError):
        enc.encode([])
    with pytest.raises(InputError):
        enc.encode([3])
