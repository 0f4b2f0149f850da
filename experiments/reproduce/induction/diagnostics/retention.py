"""Diagnostic: how long can an induction Mamba keep the target in its state? (L=1024, depth 0, 16 examples)

    python experiments/reproduce/induction/diagnostics/retention.py <run>/checkpoints/last.ckpt

Reads Δ = softplus(dt + dt_bias) of every Mamba layer by wrapping the mixer's private `_ssm_inputs` (a diagnostic, not
an API) and prints Δ at the target and on the noise tokens after it, and the retention exp(A · sum Δ) over gaps."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from seqmix.archs.mamba import Mamba
from seqmix.train.tools.evaluate.tasks import build_task, load_checkpoint

model, hp = load_checkpoint(Path(sys.argv[1]), torch.device("cpu"))
captured = []
orig = Mamba._ssm_inputs


def spy(self, x):
    out = orig(self, x)
    captured.append((F.softplus(out[0] + self.delta_bias.float()[:, None]).detach(), out[1].detach()))
    return out


Mamba._ssm_inputs = spy
task = build_task("induction", hp, model.config.vocab_size)
L, n = 1024, 16
batch = task.sample(n, L, 0.0, seed=0)
with torch.no_grad():
    logits = model(batch["input_ids"])
acc = (logits[:, -1].argmax(-1) == batch["labels"][:, -1]).float().mean().item()
print(f"accuracy at L={L}, depth 0 on these {n}: {acc:.3f}")
p = 1  # target position (trigger at 0)
for layer, (dt, A) in enumerate(captured):
    dt = dt.mean(0)  # (di, L) mean over examples
    noise = dt[:, p + 1 : L - 1]  # (di, gap)
    print(f"layer {layer}: Δ at target {dt[:, p].mean():.4f} (max {dt[:, p].max():.4f}); Δ on noise: median "
          f"{noise.median():.5f}, min over channels of mean {noise.mean(1).min():.5f}")
    for gap in (128, 256, 512, 1000):
        s = noise[:, :gap].sum(1)  # (di,)
        R = torch.exp(A * s[:, None])  # (di, N)
        # the channel most written at the target: how much of it survives
        w = dt[:, p].argmax()
        print(f"  gap {gap:5d}: max retention over (channel, state) {R.max():.3f}; share of (c,n) with R>=0.5: "
              f"{(R >= 0.5).float().mean():.3f}; most-written channel {int(w)}: best state R={R[w].max():.3f}")
