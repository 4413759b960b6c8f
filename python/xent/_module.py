"""``xent.CrossEntropyLoss``: ``nn.CrossEntropyLoss``'s constructor over ``xent.cross_entropy``."""

import torch
from torch import nn

from ._functional import cross_entropy


class CrossEntropyLoss(nn.Module):
    """As ``torch.nn.CrossEntropyLoss``, computed by ``xent.cross_entropy``.

    The constructor takes ``nn.CrossEntropyLoss``'s arguments (the deprecated
    ``size_average`` and ``reduce`` mapped to ``reduction`` as PyTorch maps them) and the
    crate's extras: ``z_loss``, ``softcap``, ``inplace_backward``.
    """

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        label_smoothing=0.0,
        z_loss=0.0,
        softcap=None,
        inplace_backward=False,
    ):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.inplace_backward = inplace_backward

    def forward(self, input, target):
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            inplace_backward=self.inplace_backward,
        )
