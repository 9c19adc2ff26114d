"""Multi-process training with PyTorch's own engine (torchrun + DistributedDataParallel).

``torchrun --nproc-per-node N -m cnnlab train ...`` starts N copies of cnnlab; each reads the
rank variables torchrun sets (the CLI does, and passes a ``DistInfo`` down), joins the process
group (gloo on CPU, nccl on CUDA), trains on its own shard of every global batch, and lets DDP
average the gradients, so all ranks hold identical weights after every step. Only rank 0
writes files and progress; metrics are summed across ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def dist_info_from_env(env: Mapping[str, str]) -> DistInfo:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK); single process if absent."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistInfo(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")))


def init_process_group(info: DistInfo, device_type: str) -> None:
    """Join the group torchrun prepared (MASTER_ADDR/PORT come from its environment)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def shutdown(*, clean: bool = False) -> None:
    """Leave the process group (a no-op outside one; safe to call twice).

    ``clean=True``, at the normal end of a run, first waits for every rank: rank 0 still writes
    the run directory after training, and a rank that tore gloo down meanwhile was aborted at
    exit ("terminate called without an active exception", every time on a 2-core AVX-512 CPU).
    After an error there is no barrier, since the other ranks may never reach it."""
    if dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over all ranks in place (no-op for one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (e.g. the run directory name)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rng_states(info: DistInfo) -> list[torch.Tensor]:
    """Every rank's CPU RNG state (dropout masks differ per rank), gathered on all ranks."""
    state = torch.get_rng_state()
    if not info.enabled:
        return [state]
    out = [torch.empty_like(state) for _ in range(info.world_size)]
    dist.all_gather(out, state)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def launch_command(nprocs: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``cnnlab argv`` on ``nprocs`` local processes."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nprocs}",
        "-m",
        "cnnlab",
        *argv,
    ]


def threads_per_process(nprocs: int) -> int:
    """Split the machine's cores between local processes (at least one each)."""
    return max(1, (os.cpu_count() or 1) // nprocs)


def shard_loader(loader, info: DistInfo):
    """An evaluation loader over every ``world_size``-th sample starting at this rank
    (together the ranks cover each sample exactly once); the loader itself for one process."""
    if not info.enabled:
        return loader
    from cnnlab.data.loader import BatchLoader

    sl = slice(info.rank, None, info.world_size)
    return BatchLoader(
        loader.images[sl], loader.labels[sl], batch_size=loader.batch_size,
        normalizer=loader.normalizer, device=loader.device, channels_last=loader.channels_last,
    )  # fmt: skip


def reduce_eval(result, info: DistInfo):
    """Combine per-rank evaluation results into the result over the whole set."""
    if not info.enabled:
        return result
    from cnnlab.evaluation.evaluate import EvalResult

    n = result.num_samples
    totals = torch.tensor([result.loss * n, result.accuracy * n, float(n)], dtype=torch.float64)
    all_reduce_sum(totals, info)
    cm = all_reduce_sum(result.confusion.clone(), info)
    loss_sum, correct, total = totals.tolist()
    return EvalResult(
        loss=loss_sum / total, accuracy=round(correct) / total, num_samples=round(total),
        confusion=cm, seconds=result.seconds,
    )  # fmt: skip
