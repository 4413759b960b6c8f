"""xent: fused softmax cross-entropy on CPU, a drop-in for ``F.cross_entropy``.

``xent.cross_entropy(input, target, ...)`` takes the arguments of
``torch.nn.functional.cross_entropy`` (plus ``z_loss``, ``softcap``,
``inplace_backward`` and ``num_threads``) and computes the loss and its gradient in one
pass of the Rust crate's SIMD kernels; ``xent.CrossEntropyLoss`` is the module form;
``xent.linear_cross_entropy`` is a language-model head's ``F.linear`` + cross-entropy
without the logits. ``xent.distributed`` splits a cross-entropy over the ranks of a
``torch.distributed`` group: by vocabulary (``vocab_parallel_cross_entropy``) or by rows
(``data_parallel_cross_entropy``).
"""

from ._functional import cross_entropy, linear_cross_entropy
from ._module import CrossEntropyLoss
from . import distributed

__all__ = ["cross_entropy", "linear_cross_entropy", "CrossEntropyLoss", "distributed"]
