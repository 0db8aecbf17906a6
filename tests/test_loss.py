"""The MERL objective equals a direct computation; retrieval metrics count what they claim."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from merl.training.loss import MERLLoss, clip_loss, retrieval_accuracy, topk_accuracy


def direct_clip(a, b, t):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    total = 0.0
    for i in range(n):  # row-by-row softmax, both directions, written out explicitly
        sa = torch.stack([a[i] @ b[j] / t for j in range(n)])
        sb = torch.stack([b[i] @ a[j] / t for j in range(n)])
        total += -(sa[i] - torch.logsumexp(sa, 0)) - (sb[i] - torch.logsumexp(sb, 0))
    return total / (2 * n)


def test_clip_loss_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    loss, logits = clip_loss(a, b, torch.tensor([math.log(1 / 0.07)]))
    assert torch.allclose(loss, direct_clip(a, b, 0.07), atol=1e-5)
    assert logits.shape == (6, 6)


def test_total_is_weighted_sum_and_temperature_clamped():
    g = torch.Generator().manual_seed(1)
    out = {k: torch.randn(5, 4, generator=g) for k in ("ecg", "text", "ecg_view1", "ecg_view2")}
    out["logit_scale"] = torch.tensor([math.log(1 / 0.1)])
    res = MERLLoss(weight_clip=0.7, weight_uni=0.3)(out)
    expect = 0.7 * direct_clip(out["ecg"], out["text"], 0.1) + 0.3 * direct_clip(out["ecg_view1"], out["ecg_view2"], 0.1)
    assert torch.allclose(res.total, expect, atol=1e-5)
    huge = dict(out, logit_scale=torch.tensor([10.0]))  # exp(10) would be T=4.5e-5; clamped to T=0.01
    assert torch.allclose(clip_loss(out["ecg"], out["text"], huge["logit_scale"])[0],
                          direct_clip(out["ecg"], out["text"], 0.01), atol=1e-4)


def test_learnable_temperature_gets_gradient():
    a = torch.randn(4, 3, requires_grad=True)
    scale = torch.tensor([math.log(1 / 0.07)], requires_grad=True)
    clip_loss(a, torch.randn(4, 3), scale)[0].backward()
    assert scale.grad is not None and scale.grad.abs().item() > 0 and a.grad is not None


def test_topk_and_retrieval_over_distinct_reports():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.0, 0.3, 0.5]])
    acc = topk_accuracy(logits, torch.tensor([0, 1, 2]), ks=(1, 2))
    assert abs(acc[1] - 2 / 3) < 1e-6 and abs(acc[2] - 2 / 3) < 1e-6
    text = torch.eye(3)
    ecg = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    reports = ["a", "a", "c", "b"]  # rows 0/1 share a report: one candidate
    assert retrieval_accuracy(ecg, text[[0, 0, 2, 1]], reports, ks=(1,))[1] == 1.0
