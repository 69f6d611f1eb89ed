"""Multi-process training with PyTorch's own engine (torchrun + DistributedDataParallel).

`seqrec train --nproc N` starts N local processes through `torch.distributed.run` (torchrun);
on several machines run torchrun yourself (README, "Scale-out"). Each process reads its rank
from the environment torchrun sets, joins the process group (gloo on CPU, NCCL on GPU), trains on
its shard of every batch, and DDP averages the gradients. Validation metrics are computed on a
shard of the users per rank and reduced. Only rank 0 writes checkpoints and the bundle.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> None:
    """Join the process group torchrun describes (no-op for a single process)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_device_index())
    dist.init_process_group(backend=backend)


def local_device_index() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def reduce_metrics(metrics: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """Means over all ranks' users: each rank's mean weighted by its number of users.

    A metric named ``group:name`` is weighted by ``counts['group:users']``, others by
    ``counts['users']``, so the result equals the metric over the union of the shards.
    """
    if world_size() == 1:
        return metrics
    names = sorted(metrics)
    weights = []
    for name in names:
        group = name.split(":")[0] + ":" if ":" in name else ""
        weights.append(float(counts.get(f"{group}users", 0)))
    weight = torch.tensor(weights, dtype=torch.float64)
    values = torch.tensor([metrics[name] for name in names], dtype=torch.float64)
    values = torch.nan_to_num(values) * weight
    dist.all_reduce(values)
    dist.all_reduce(weight)
    reduced = values / weight.clamp_min(1.0)
    return {name: float(value) for name, value in zip(names, reduced, strict=True)}


def launch(nproc: int, script: str, args: list[str]) -> int:
    """Run ``script args`` in ``nproc`` local processes with torchrun; returns the exit code."""
    from torch.distributed.run import get_args_parser, run

    parsed = get_args_parser().parse_args(
        ["--standalone", f"--nproc_per_node={nproc}", script, *args]
    )
    try:
        run(parsed)
    except Exception as error:  # ChildFailedError: the ranks' own output says why
        print(f"distributed run failed: {error}")
        return 1
    return 0
