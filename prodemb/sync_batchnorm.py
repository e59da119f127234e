"""BatchNorm over the global batch of a process group (torchrun): SyncBatchNorm on CUDA, GlobalBatchNorm1d on
CPU/gloo. prodemb.train converts the model with ``convert_sync_batchnorm`` when more than one rank trains."""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn as nn
from torch import Tensor


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch of a process group, on any
    backend (``torch.nn.SyncBatchNorm`` only runs on GPUs; this is what CPU/gloo training uses).

    In training mode with an initialized group of more than one process: mean = Σx / n and then
    var = Σ(x − mean)² / n over all ranks' rows (two all-reduces, two-pass for accuracy), through the
    differentiable all-reduce (``_AllReduceSum``), so the backward all-reduces the statistics'
    gradients exactly as SyncBatchNorm does. Running statistics are updated from the global
    values, hence identical on every rank. Otherwise (eval, one process) it is plain BatchNorm1d.
    """

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def forward(self, x: Tensor) -> Tensor:
        import torch.distributed as dist

        if not (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size(self.process_group) > 1
        ):
            return super().forward(x)
        C, group = x.shape[1], self.process_group or dist.group.WORLD
        count = x.new_full((1,), float(x.shape[0]))
        total = _AllReduceSum.apply(torch.cat([x.sum(0), count]), group)
        n = total[C]
        mean = total[:C] / n
        var = _AllReduceSum.apply((x - mean).pow(2).sum(0), group) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)  # unbiased, like BN
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


class _AllReduceSum(torch.autograd.Function):
    """Σ over the ranks of the group, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


_M = TypeVar("_M", bound=nn.Module)


def convert_sync_batchnorm(module: _M, device: torch.device, process_group=None) -> _M:
    """Every BatchNorm1d of ``module`` (online and target networks alike) normalizing with the statistics
    of the global batch across the process group: ``torch.nn.SyncBatchNorm`` on CUDA (NCCL),
    ``GlobalBatchNorm1d`` elsewhere (gloo). Parameters and buffers are kept (the same tensors)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)  # type: ignore[return-value]
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, GlobalBatchNorm1d):
        out = GlobalBatchNorm1d(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            process_group=process_group,
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out  # type: ignore[return-value]
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device, process_group))
    return module
