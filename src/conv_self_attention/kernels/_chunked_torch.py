"""The chunked kernel for torch: a loop over query blocks inside an
`autograd.Function` whose backward pass recomputes each block.

Eager torch knows N, so blocks are plain slices (the last may be short)
and nothing is padded. Only O(N x d) tensors and the row log-sum-exp are
saved for the backward pass.

Calls traced for an exporter (`torch.export`, `torch.onnx.export` with or
without dynamo; the plan's `exporting`, see `device.is_exporting`) get the
same blocks as plain functional ops instead: the in-place writes of the
`autograd.Function` did not survive the TorchScript ONNX exporter (the
attention vanished from the graph). Their blocks span the whole batch, as
planned (`chunked.plan_blocks`): a loop over the images would fix the
batch of the exported program.
"""

import torch

from conv_self_attention.kernels.device import static_size


def chunked_attention(query, key, value, scale, plan, *, exporting):
    """`query (B, h, N, dk)`, `key (B, h, M, dk)`, `value (B, h, M, dv)`,
    all float32, to `(B, h, N, dv)` float32 in the blocks of `plan` (a
    `BlockPlan`); `exporting`: functional ops for an exporter."""
    scale, chunk_size = float(scale), int(plan.chunk_size)
    if exporting:
        return _exported_forward(query * scale, key, value, chunk_size)
    if not plan.per_image:
        return _ChunkedAttention.apply(query, key, value, scale, chunk_size)
    return torch.cat(
        [
            _ChunkedAttention.apply(
                query[i : i + 1], key[i : i + 1], value[i : i + 1], scale,
                chunk_size,
            )
            for i in range(query.shape[0])
        ]
    )


def _exported_forward(scaled, key, value, chunk_size):
    """The forward pass as out-of-place ops over static query blocks.

    Blocks are slices of N read as an int: the TorchScript exporter wrote
    `torch.split` of a short last block as equal splits (99 queries in
    blocks of 32 became a Split of 128, which ONNX Runtime refuses).
    """
    key_t = key.transpose(-1, -2)
    length = static_size(scaled.shape[2])
    blocks = [
        torch.matmul(
            torch.softmax(torch.matmul(scaled[:, :, block], key_t), dim=-1),
            value,
        )
        for block in _block_slices(length, chunk_size)
    ]
    return torch.cat(blocks, dim=2)


def _block_slices(length, chunk_size):
    return [
        slice(start, min(start + chunk_size, length))
        for start in range(0, length, chunk_size)
    ]


class _ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, scale, chunk_size):
        # Scaling q (N x dk) is cheaper than scaling the logits (N x M).
        scaled = query * scale if scale != 1.0 else query
        batch, heads, length, _ = query.shape
        out = query.new_empty(batch, heads, length, value.shape[-1])
        lse = query.new_empty(batch, heads, length, 1)
        key_t = key.transpose(-1, -2)
        for block in _block_slices(length, chunk_size):
            logits = torch.matmul(scaled[:, :, block], key_t)
            row_max = logits.amax(dim=-1, keepdim=True)
            weights = torch.exp_(logits.sub_(row_max))
            row_sum = weights.sum(dim=-1, keepdim=True)
            # Normalising the (block, dv) output is cheaper than (block, M).
            out[:, :, block] = torch.matmul(weights, value).div_(row_sum)
            lse[:, :, block] = row_max + torch.log(row_sum)
        ctx.save_for_backward(scaled, key, value, out, lse)
        ctx.scale = scale
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        scaled, key, value, out, lse = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_query = torch.empty_like(scaled)
        grad_key = torch.zeros_like(key)
        grad_value = torch.zeros_like(value)
        key_t = key.transpose(-1, -2)
        value_t = value.transpose(-1, -2)
        length = scaled.shape[2]
        for block in _block_slices(length, ctx.chunk_size):
            query = scaled[:, :, block]
            grad = grad_out[:, :, block]
            logits = torch.matmul(query, key_t)
            probs = torch.exp_(logits.sub_(lse[:, :, block]))
            grad_logits = torch.matmul(grad, value_t)
            # rowsum(dP * P) equals rowsum(dO * O): O(block x dv), not x M.
            delta = (grad * out[:, :, block]).sum(dim=-1, keepdim=True)
            grad_logits.sub_(delta).mul_(probs)
            grad_query[:, :, block] = torch.matmul(grad_logits, key)
            grad_key += torch.matmul(grad_logits.transpose(-1, -2), query)
            grad_value += torch.matmul(probs.transpose(-1, -2), grad)
        if ctx.scale != 1.0:
            grad_query.mul_(ctx.scale)
        return grad_query, grad_key, grad_value, None, None
