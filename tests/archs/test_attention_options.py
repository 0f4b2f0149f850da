"""Attention's options: ALiBi and NoPE against a slow reference, grouped-query heads against repeated MHA heads."""

import math

import pytest
import torch

from seqmix.archs import Attention, LanguageModel, ModelConfig
from seqmix.archs.attention import alibi_slopes


def reference_attention(x, mixer, slopes=None, rotate=None):
    """Softmax attention by loops over heads and queries from the mixer's weights (no GQA reshapes, no masks)."""
    b, length, d = x.shape
    h, hkv, hd = mixer.n_heads, mixer.n_kv_heads, mixer.head_dim
    wq, wk, wv = mixer.qkv.weight.split([d, hkv * hd, hkv * hd])
    out = torch.zeros(b, length, d, dtype=x.dtype)
    for head in range(h):
        kv = head // (h // hkv)
        q = x @ wq[head * hd : (head + 1) * hd].T  # (B, L, hd)
        k = x @ wk[kv * hd : (kv + 1) * hd].T
        v = x @ wv[kv * hd : (kv + 1) * hd].T
        if rotate is not None:
            q, k = rotate(q), rotate(k)
        for i in range(length):
            logits = (k[:, : i + 1] @ q[:, i, :, None])[..., 0] / math.sqrt(hd)  # (B, i + 1)
            if slopes is not None:
                logits = logits - slopes[head] * (i - torch.arange(i + 1, dtype=x.dtype))
            out[:, i, head * hd : (head + 1) * hd] = (logits.softmax(-1)[:, None] @ v[:, : i + 1])[:, 0]
    return mixer.out(out)


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0**-i for i in (2, 4, 6, 8)]
    # not a power of two: the 4-head slopes, then every other slope of the 8-head sequence
    assert alibi_slopes(6).tolist() == [2.0**-i for i in (2, 4, 6, 8, 1, 3)]


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (4, 2), (6, 3), (4, 1)])
def test_alibi_and_nope_match_the_loop_reference(impl, heads, kv_heads):
    torch.manual_seed(0)
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    alibi = Attention(24, n_heads=heads, n_kv_heads=kv_heads, position="alibi", impl=impl).double()
    torch.testing.assert_close(alibi(x), reference_attention(x, alibi, slopes=alibi_slopes(heads).double()))
    nope = Attention(24, n_heads=heads, n_kv_heads=kv_heads, position="none", impl=impl).double()
    torch.testing.assert_close(nope(x), reference_attention(x, nope))


def test_rope_matches_the_loop_reference_and_nope_is_permutation_blind():
    torch.manual_seed(1)
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    rope = Attention(16, n_heads=2, n_kv_heads=1).double()

    def rotate(t):  # t (B, L, hd): pair (i, i + hd/2) turned by pos * 10000^(-2i/hd)
        hd = t.shape[-1]
        ang = torch.arange(t.shape[1], dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, hd, 2) / hd)
        t1, t2 = t[..., : hd // 2], t[..., hd // 2 :]
        return torch.cat([t1 * ang.cos() - t2 * ang.sin(), t1 * ang.sin() + t2 * ang.cos()], -1)

    torch.testing.assert_close(rope(x), reference_attention(x, rope, rotate=rotate), rtol=1e-5, atol=1e-6)
    # without positions the last output depends on the earlier tokens only as a set
    nope = Attention(16, position="none").double()
    perm = torch.cat([torch.randperm(7), torch.tensor([7])])
    torch.testing.assert_close(nope(x[:, perm])[:, -1], nope(x)[:, -1])
    assert not torch.allclose(rope(x[:, perm])[:, -1], rope(x)[:, -1])


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_gqa_equals_mha_with_repeated_key_value_heads(kv_heads):
    torch.manual_seed(2)
    gqa = Attention(32, n_heads=4, n_kv_heads=kv_heads).double()
    mha = Attention(32, n_heads=4).double()
    wq, wk, wv = gqa.qkv.weight.split([32, 8 * kv_heads, 8 * kv_heads])
    group = 4 // kv_heads
    with torch.no_grad():  # each kv head's rows copied to every query head of its group
        rep = lambda w: w.view(kv_heads, 8, 32).repeat_interleave(group, 0).reshape(32, 32)  # noqa: E731
        mha.qkv.weight.copy_(torch.cat([wq, rep(wk), rep(wv)]))
        mha.out.weight.copy_(gqa.out.weight)
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    torch.testing.assert_close(gqa(x), mha(x))


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (8, 1), (8, 4)])
def test_gqa_state_is_heads_over_kv_heads_smaller(heads, kv_heads):
    x = torch.randn(2, 40, 64)
    gqa, mha = Attention(64, n_heads=heads, n_kv_heads=kv_heads), Attention(64, n_heads=heads)
    held = {m: sum(t.numel() for k, t in m.prefill(x)[1].items() if k != "pos") for m in (gqa, mha)}
    assert held[mha] == heads // kv_heads * held[gqa]
    assert mha.state_bytes(40, 2) - 8 == heads // kv_heads * (gqa.state_bytes(40, 2) - 8)
    cfg = dict(d_model=64, n_layers=3, vocab_size=50)
    full = LanguageModel(ModelConfig(mixer="attention", mixer_args={"n_heads": heads}, **cfg))
    small = LanguageModel(ModelConfig(mixer="attention", mixer_args={"n_heads": heads, "n_kv_heads": kv_heads}, **cfg))
    assert full.state_bytes(1000) - 24 == heads // kv_heads * (small.state_bytes(1000) - 24)
    assert small.param_count() == sum(p.numel() for p in small.parameters()) < full.param_count()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_heads": 4, "n_kv_heads": 3}, "n_heads=4 is not divisible by n_kv_heads=3"),
        ({"n_kv_heads": 0}, "n_kv_heads must be a positive integer, got 0"),
        ({"position": "learned"}, "unknown position 'learned'; choose one of rope, alibi, none"),
        ({"n_heads": 8, "position": "rope"}, "rotary embeddings need an even head dim"),
        ({"rope_base": 0}, "rope_base must be a number > 1, got 0"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Attention(24, **kwargs)
    Attention(24, n_heads=8, position="alibi")  # an odd head dim is fine without rotary
