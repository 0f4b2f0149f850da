"""KV-cache policies against slow, obviously correct references, and their state accounting."""

import math

import pytest
import torch

from seqmix.archs import Attention, KVPolicy, KVSchedule, LanguageModel, ModelConfig, SlidingWindow
from seqmix.archs.attention import alibi_slopes
from seqmix.archs.kv_policy import parse_kv_policy, pyramid_budgets, set_kv_policy

from .test_sliding_window import band_mask, masked_reference


def decode(mixer, x, prompt):
    """Outputs of prefill(x[:, :prompt]) followed by one step per remaining token, and the last state."""
    y, state = mixer.prefill(x[:, :prompt])
    outs = [y]
    for t in range(prompt, x.shape[1]):
        out, state = mixer.step(x[:, t], state)
        outs.append(out[:, None])
    return torch.cat(outs, 1), state


def model_decode(model, idx, prompt):
    logits, states = model.prefill(idx[:, :prompt])
    outs = [logits]
    for t in range(prompt, idx.shape[1]):
        step, states = model.step(idx[:, t], states)
        outs.append(step[:, None])
    return torch.cat(outs, 1), states


def held_bytes(states):
    return sum(t.numel() * t.element_size() for s in states for t in s.values())


def tiny_model(mixer="attention", **args):
    torch.manual_seed(0)
    cfg = ModelConfig(mixer=mixer, mixer_args=args, d_model=32, n_layers=3, vocab_size=50, mlp_ratio=2.0)
    return LanguageModel(cfg).double()


@pytest.mark.parametrize("args", [{}, {"n_kv_heads": 2, "position": "alibi"}])
def test_full_is_todays_decode_exactly(args):
    model = tiny_model(**args)
    idx = torch.randint(0, 50, (2, 23))
    before, states_before = model_decode(model, idx, 9)
    set_kv_policy(model, "window:4")
    set_kv_policy(model, "full")
    after, states_after = model_decode(model, idx, 9)
    assert torch.equal(before, after)
    assert all(m.kv_policy is None for m in model.mixers)
    assert held_bytes(states_after) == held_bytes(states_before)
    assert held_bytes(model.prefill(idx[:, :9])[1]) == model.state_bytes(9, batch=2, dtype=torch.float64)


@pytest.mark.parametrize(("spec", "window", "n_sinks"), [("window:5", 5, 0), ("window:1", 1, 0), ("sinks:3+4", 4, 3),
                                                          ("sinks:1+1", 1, 1)])
@pytest.mark.parametrize("args", [{}, {"n_heads": 4, "n_kv_heads": 1, "position": "alibi"}, {"position": "none"}])
def test_window_and_sinks_equal_a_band_masked_forward(spec, window, n_sinks, args):
    torch.manual_seed(1)
    mixer = Attention(16, **args).double()
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    q, k, v = mixer.project(x)
    slopes = alibi_slopes(mixer.n_heads) if mixer.position == "alibi" else None
    want = mixer.merge(masked_reference(q, k, v, band_mask(30, window, n_sinks), slopes))
    set_kv_policy(mixer, spec)
    for prompt in (0, 2, 17, 30):
        got, state = decode(mixer, x, prompt)
        torch.testing.assert_close(got, want)
        assert state["k"].shape[2] == window + n_sinks


@pytest.mark.parametrize(("spec", "window", "n_sinks"), [("window:6", 6, 0), ("sinks:2+5", 5, 2)])
def test_policy_on_an_attention_model_equals_the_sliding_window_model(spec, window, n_sinks):
    model = tiny_model()
    banded = LanguageModel(ModelConfig(**{**model.config.__dict__, "mixer": "sliding_window",
                                          "mixer_args": {"window": window, "n_sinks": n_sinks}})).double()
    banded.load_state_dict(model.state_dict())
    idx = torch.randint(0, 50, (2, 26))
    set_kv_policy(model, spec)
    got, states = model_decode(model, idx, 11)
    torch.testing.assert_close(got, banded(idx))
    # the same tokens kept, so the same bytes held, as the sliding-window model's ring buffer (plus slot positions)
    ring = banded.state_bytes(26, batch=2, dtype=torch.float64)
    assert held_bytes(states) == model.state_bytes(26, batch=2, dtype=torch.float64) == ring + 3 * (window + n_sinks) * 8


def h2o_reference(q, k, v, budget, recent):
    """H2O by sets: per (batch, kv head) keep a list of positions; each step evicts the oldest-window-excluded token
    with the least accumulated attention, then attends over the kept set and adds each query's probabilities."""
    b, h, length, hd = q.shape
    hkv = k.shape[1]
    g = h // hkv
    y = torch.zeros_like(q)
    for bi in range(b):
        for kv in range(hkv):
            kept, score = [], {}
            for t in range(length):
                if len(kept) == budget:
                    victim = min((p for p in kept if p <= t - recent), key=lambda p: score[p])
                    kept.remove(victim)
                kept.append(t)
                score[t] = 0.0
                for head in range(kv * g, (kv + 1) * g):
                    logits = torch.stack([q[bi, head, t] @ k[bi, kv, p] for p in kept]) / math.sqrt(hd)
                    probs = logits.softmax(0)
                    y[bi, head, t] = sum(w * v[bi, kv, p] for w, p in zip(probs, kept, strict=True))
                    for w, p in zip(probs.tolist(), kept, strict=True):
                        score[p] += w
    return y


@pytest.mark.parametrize(("budget", "recent"), [(6, None), (5, 1), (4, 4), (1, None)])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_heavy_hitters_equal_the_set_reference(budget, recent, kv_heads):
    torch.manual_seed(2)
    mixer = Attention(16, n_heads=4, n_kv_heads=kv_heads).double()
    x = torch.randn(2, 20, 16, dtype=torch.float64) * 4  # peaky attention, so that heads choose differently
    q, k, v = mixer.project(x)
    policy = KVPolicy("heavy_hitters", budget=budget, recent=recent)
    want = mixer.merge(h2o_reference(q, k, v, budget, policy.n_recent))
    set_kv_policy(mixer, policy)
    for prompt in (0, 7, 20):
        got, state = decode(mixer, x, prompt)
        torch.testing.assert_close(got, want)
    assert state["kpos"].shape == (2, kv_heads, budget)
    # the kept sets differ between heads: heavy hitters are chosen per head
    if budget > 1 and recent != budget:
        assert len({tuple(sorted(row.tolist())) for row in state["kpos"].flatten(0, 1)}) > 1


def test_heavy_hitters_on_a_sliding_window_evict_what_the_window_hides_first():
    # with a budget of at least the window, every token the window shows stays, so decoding equals the forward
    torch.manual_seed(4)
    mixer = SlidingWindow(16, window=3, n_sinks=1).double()
    x = torch.randn(2, 25, 16, dtype=torch.float64) * 3
    want = mixer(x)
    set_kv_policy(mixer, "heavy_hitters:5/1")
    torch.testing.assert_close(decode(mixer, x, 6)[0], want)


def test_heavy_hitters_keep_the_most_attended_token():
    # a huge key at position 0 draws nearly all attention, so H2O never evicts it while a window would
    torch.manual_seed(3)
    mixer = Attention(8, n_heads=1, position="none").double()
    x = torch.randn(1, 30, 8, dtype=torch.float64) * 0.1
    with torch.no_grad():
        mixer.qkv.weight.zero_()
        mixer.qkv.weight[:8].copy_(torch.eye(8))  # q = x, k = x, v = x
        mixer.qkv.weight[8:16].copy_(torch.eye(8))
        mixer.qkv.weight[16:].copy_(torch.eye(8))
    x[0, 0] = 5.0
    x[0, 1:, :] += 1.0
    set_kv_policy(mixer, "heavy_hitters:4")
    _, state = decode(mixer, x, 30)
    assert 0 in state["kpos"].flatten().tolist()
    assert {28, 29} <= set(state["kpos"].flatten().tolist())


POLICIES = ["full", "window:4", "sinks:2+3", "heavy_hitters:5", "heavy_hitters:6/2"]


@pytest.mark.parametrize("spec", POLICIES)
@pytest.mark.parametrize("length", [0, 3, 12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mixer", ["attention", "sliding_window"])
def test_held_tensors_equal_the_accounted_bytes(spec, length, dtype, mixer):
    model = LanguageModel(ModelConfig(mixer=mixer, mixer_args={"n_kv_heads": 2}, d_model=16, n_layers=2,
                                      vocab_size=20)).to(dtype)
    set_kv_policy(model, spec)
    idx = torch.randint(0, 20, (3, length))
    _, states = model.prefill(idx)
    assert held_bytes(states) == model.state_bytes(length, batch=3, dtype=dtype)
    policy = parse_kv_policy(spec)
    assert model.state_bytes(length, 3, dtype) == sum(policy.state_bytes(m, length, 3, dtype) for m in model.mixers)
    if policy.kind == "full":
        return
    for t in range(7):  # decoding on, the cache grows by doubling up to the budget, then stays exactly at it
        _, states = model.step(torch.randint(0, 20, (3,)), states)
        if length + t + 1 >= policy.budget:
            assert held_bytes(states) == model.state_bytes(length + t + 1, batch=3, dtype=dtype)
    assert model.state_bytes(length + 7, 3, dtype) == model.state_bytes(10**6, 3, dtype)


@pytest.mark.parametrize("spec", POLICIES[1:])
def test_a_cloned_policy_state_replays_the_same_steps(spec):
    model = tiny_model()
    set_kv_policy(model, spec)
    idx = torch.randint(0, 50, (2, 16))
    _, states = model.prefill(idx[:, :4])  # below every budget: the steps grow the cache, then evict
    saved = model.clone_states(states)
    first = [model.step(idx[:, t], states)[0] for t in range(4, 16)]
    again = [model.step(idx[:, t], saved)[0] for t in range(4, 16)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_budgeted_state_is_flat_in_length():
    model = tiny_model()
    full = [model.state_bytes(n) for n in (64, 1024, 16384)]
    for spec in ("window:32", "sinks:4+28", "heavy_hitters:32"):
        set_kv_policy(model, spec)
        sizes = {model.state_bytes(n) for n in (64, 1024, 16384)}
        assert len(sizes) == 1 and sizes.pop() < full[0]
    assert full[2] == pytest.approx(256 * full[0], rel=0.01)


def test_pyramid_gives_lower_layers_larger_budgets():
    assert pyramid_budgets(16, 4) == [28, 20, 12, 4]
    for mean, n in [(16, 4), (7, 3), (100, 6), (5, 1), (1, 5)]:
        budgets = pyramid_budgets(mean, n)
        assert sum(budgets) == mean * n and budgets == sorted(budgets, reverse=True) and min(budgets) >= 1
    model = tiny_model()
    set_kv_policy(model, "pyramid:8")
    assert [m.kv_policy.budget for m in model.mixers] == pyramid_budgets(8, 3) == [14, 8, 2]
    idx = torch.randint(0, 50, (2, 30))
    _, states = model_decode(model, idx, 10)
    assert [s["k"].shape[2] for s in states] == [14, 8, 2]
    assert held_bytes(states) == model.state_bytes(30, batch=2, dtype=torch.float64)


def test_a_per_layer_list():
    model = tiny_model()
    set_kv_policy(model, "window:8, full, sinks:1+2")
    assert [m.kv_policy and m.kv_policy.spec for m in model.mixers] == ["window:8", None, "sinks:1+2"]
    schedule = parse_kv_policy("window:8,full,sinks:1+2")
    assert isinstance(schedule, KVSchedule) and parse_kv_policy(schedule.spec) == schedule
    for spec in POLICIES + ["pyramid:12"]:
        assert parse_kv_policy(parse_kv_policy(spec).spec) == parse_kv_policy(spec)
    with pytest.raises(ValueError, match="the KV policy list names 2 layers but the model has 3"):
        set_kv_policy(model, "window:8,full")


def test_full_on_a_sliding_window_model_is_its_ring_buffer():
    model = tiny_model("sliding_window", window=4)
    idx = torch.randint(0, 50, (1, 15))
    want = model(idx)
    set_kv_policy(model, "heavy_hitters:3")
    assert not torch.allclose(model_decode(model, idx, 5)[0], want)
    set_kv_policy(model, "full")
    got, states = model_decode(model, idx, 5)
    torch.testing.assert_close(got, want)
    assert set(states[0]) == {"k", "v", "pos"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lru:4", "unknown KV policy 'lru:4'; valid: full, window:W, sinks:S\\+W, heavy_hitters:B, pyramid:B"),
        ("window", "unknown KV policy 'window'"),
        ("window:0", "KV policy 'window:0': W must be an integer >= 1, got '0'"),
        ("window:-3", "W must be an integer >= 1, got '-3'"),
        ("sinks:4+0", "the budget S\\+W = 4 is smaller than sinks \\+ 1 = 5"),
        ("sinks:4", "write sinks:S\\+W"),
        ("heavy_hitters:x", "B must be an integer >= 1, got 'x'"),
        ("heavy_hitters:4/5", "recent must be in 1..budget=4"),
        ("pyramid:0", "B must be an integer >= 1, got '0'"),
        ("window:4,pyramid:3", "a per-layer list holds single-layer policies"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_kv_policy(spec)


def test_bad_policies_and_layers():
    with pytest.raises(ValueError, match="budget 3 is smaller than n_sinks \\+ 1 = 4"):
        KVPolicy("sinks", budget=3, n_sinks=3)
    with pytest.raises(ValueError, match="unknown KV policy kind 'lru'"):
        KVPolicy("lru", budget=3)
    mamba = LanguageModel(ModelConfig(mixer="mamba", d_model=16, n_layers=2, vocab_size=20))
    with pytest.raises(ValueError, match="layer 0 \\(mamba\\) is not of the attention family"):
        set_kv_policy(mamba, "window:4")
    with pytest.raises(ValueError, match="set_kv_policy takes a spec string"):
        set_kv_policy(mamba, 4)
    assert isinstance(SlidingWindow(16), Attention)  # the attention family: attention and sliding_window
