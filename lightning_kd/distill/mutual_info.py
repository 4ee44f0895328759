"""Jensen-Shannon mutual-information estimator and CorrKD's response-disentangled consistency distillation.

Li et al., "Correlation-Decoupled Knowledge Distillation for Multimodal Sentiment Analysis with
Incomplete Modalities", CVPR 2024, Sec. 3 (response-disentangled consistency distillation, RCD): the
softmax response is split into the target-class part and the non-target distribution, and for each part
the mutual information between teacher and student is maximised with a Jensen-Shannon estimator
(Hjelm et al., "Learning deep representations by mutual information estimation and maximization",
ICLR 2019, the Deep InfoMax form).

Training note: the statistics networks are ordinary submodules, so the optimiser that trains the student
also trains them, on the same loss ``-MI``: the networks maximise the estimate (tightening the bound)
while the student maximises the information it shares with the teacher, as in Deep InfoMax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["JSMutualInformation", "ResponseDisentangledDistillation"]

_RENORM_EPS = 1e-12


class JSMutualInformation(nn.Module):
    """Jensen-Shannon MI estimate between paired batches ``x (B, dim_x)`` and ``y (B, dim_y)``, or grouped
    batches ``x (B, G, dim_x)`` and ``y (B, G, dim_y)`` (``G`` decisions per sample, e.g. IEMOCAP's four
    emotions; one shared statistics network).

    ``T(x, y) = MLP([x; y])`` (Linear(dim_x + dim_y, hidden), ReLU, Linear(hidden, hidden), ReLU,
    Linear(hidden, 1)), and

    ``MI = mean_{i,g}[-softplus(-T(x_ig, y_ig))] - mean_{i,g}[softplus(T(x_ig, y_{i-1,g}))]``

    The marginal (product-of-marginals) pairs take ``y`` rolled by one position along the SAMPLE axis
    (``torch.roll(y, 1, 0)``), within each group: our choice instead of a random shuffle, deterministic and
    a derangement of the samples for ``B > 1`` (no marginal pair ever holds two parts of the same sample,
    which would not be independent). Grouped, the estimate is the mean over groups of the per-group
    estimates. It lies in ``(-inf, 0)``; independent inputs give at most ``-2 log 2``. With ``B < 2`` there
    is no marginal pair and the estimate is 0 (still connected to the graph, with zero gradient, so every
    parameter takes part in backward). Computed in float32 with autocast disabled.

    Args:
        dim_x, dim_y: sizes of the two inputs. hidden: width of the statistics network.
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: int = 64) -> None:
        super().__init__()
        self.dim_x, self.dim_y = int(dim_x), int(dim_y)
        self.net = nn.Sequential(
            nn.Linear(dim_x + dim_y, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def statistic(self, x: Tensor, y: Tensor) -> Tensor:
        """``T(x_i, y_i)`` for each pair: ``(B,)`` (or ``(B, G)`` for grouped inputs)."""
        return self.net(torch.cat([x, y], dim=-1)).squeeze(-1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Scalar float32 JS MI estimate (gradients reach ``x``, ``y`` and the statistics network)."""
        if (x.dim() not in (2, 3) or y.dim() != x.dim() or x.shape[:-1] != y.shape[:-1]
                or x.shape[-1] != self.dim_x or y.shape[-1] != self.dim_y):
            raise ValueError(f"expected x (B, [G,] {self.dim_x}) and y (B, [G,] {self.dim_y}), got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, y = x.float(), y.float()
            joint = self.statistic(x, y)
            if x.shape[0] < 2:
                return joint.sum() * 0.0
            marginal = self.statistic(x, torch.roll(y, 1, 0))
            return (-F.softplus(-joint)).mean() - F.softplus(marginal).mean()


class ResponseDisentangledDistillation(nn.Module):
    """RCD loss on ``student_logits (B, C)``, ``teacher_logits (B, C)`` and ground-truth ``labels (B,)``,
    or per-decision ``(B, E, C)`` logits and ``labels (B, E)`` (IEMOCAP: E = 4 binary emotion decisions).

    With ``p = softmax(logits / temperature)`` on each side:

    - target part ``b = [p_y, 1 - p_y]`` (``y`` the ground-truth class);
    - non-target part ``p^ = p_{-y} / max(sum p_{-y}, 1e-12)``, the ``C - 1`` non-target probabilities in
      class order, renormalised to sum to 1;

    ``loss = -(MI(b_t, b_s) + MI(p^_t, p^_s))`` with one :class:`JSMutualInformation` per part
    (``target_mi``: 2 + 2 inputs; ``nontarget_mi``: (C-1) + (C-1) inputs). Teacher logits are detached.
    For ``C == 2`` the non-target distribution is the constant ``[1]`` and carries no information, so that
    term is skipped and ``nontarget_mi`` is not built (``None``): in the paper's binary MOSI/MOSEI setting
    RCD reduces to its target part. With ``E`` decisions the parts keep their ``(B, E, .)`` shape, so the
    estimator's marginal pairs are (sample i, decision e) with (sample i-1, the same decision e), never two
    decisions of one sample (see :class:`JSMutualInformation`). The statistics networks are trained by the
    student's optimiser on this same loss (see the module docstring). Estimator width and temperature are
    our choices (the paper gives neither).

    Args:
        num_classes: ``C`` (>= 2). hidden: width of the statistics networks. temperature: softmax temperature.
    """

    def __init__(self, num_classes: int, hidden: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.target_mi = JSMutualInformation(2, 2, hidden)
        self.nontarget_mi: JSMutualInformation | None = (
            JSMutualInformation(num_classes - 1, num_classes - 1, hidden) if num_classes > 2 else None)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, temperature={self.temperature}"

    def decouple(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Float32 ``b (..., 2)`` and ``p^ (..., C - 1)`` of ``logits (..., C)`` and ``labels (...)``."""
        p = torch.softmax(logits.float() / self.temperature, dim=-1)
        y = labels.long()[..., None]  # (..., 1)
        p_target = p.gather(-1, y)  # (..., 1)
        b = torch.cat([p_target, 1.0 - p_target], dim=-1)
        cols = torch.arange(self.num_classes - 1, device=p.device)  # (C-1,)
        nontarget = p.gather(-1, cols + (cols >= y).long())  # the C-1 columns != y, in class order
        p_hat = nontarget / nontarget.sum(-1, keepdim=True).clamp_min(_RENORM_EPS)
        return b, p_hat

    def parts(self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``{"target_mi": MI(b_t, b_s), "nontarget_mi": MI(p^_t, p^_s) or 0 when C == 2}`` (float32)."""
        expected = (*student_logits.shape[:-1], self.num_classes)
        if student_logits.dim() not in (2, 3) or student_logits.shape != expected or teacher_logits.shape != expected:
            raise ValueError(f"expected student and teacher logits of shape (B, [E,] {self.num_classes}), got "
                             f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
        if labels.shape != student_logits.shape[:-1]:
            raise ValueError(f"expected labels of shape {tuple(student_logits.shape[:-1])}, got {tuple(labels.shape)}")
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            b_s, p_s = self.decouple(student_logits, labels)
            b_t, p_t = self.decouple(teacher_logits.detach(), labels)
            target = self.target_mi(b_t, b_s)
            if self.nontarget_mi is None:
                nontarget = target.new_zeros(())
            else:
                nontarget = self.nontarget_mi(p_t, p_s)
        return {"target_mi": target, "nontarget_mi": nontarget}

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Tensor:
        """Scalar float32 RCD loss ``-(target_mi + nontarget_mi)``."""
        parts = self.parts(student_logits, teacher_logits, labels)
        return -(parts["target_mi"] + parts["nontarget_mi"])
