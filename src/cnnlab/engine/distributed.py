"""Multi-process training with PyTorch's own engine (torchrun + DistributedDataParallel).

``torchrun --nproc-per-node N -m cnnlab train ...`` starts N copies of cnnlab; each reads the
rank variables torchrun sets (the CLI does, and passes a ``DistInfo`` down), joins the process
group (gloo on CPU; on CUDA one GPU per process, ``LOCAL_RANK``'s, with nccl for CUDA tensors
and gloo beside it for the few CPU tensors: RNG states, evaluation sums), trains on its own
shard of every global batch, and lets DDP average the gradients, so all ranks hold identical
weights after every step. Only rank 0 writes files and progress; metrics are summed across ranks.
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


# The backend per device type. nccl alone would refuse the CPU tensors of ``gather_rng_states``
# and ``reduce_eval`` ("No backend type associated with device type cpu").
BACKENDS = {"cpu": "gloo", "cuda": "cpu:gloo,cuda:nccl"}


def _cpu_collective_device() -> torch.device:
    """Where a collective over CPU tensors runs: the CPU, unless the group was made (by someone
    else) with nccl alone, which takes only CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_process_group(info: DistInfo, device_type: str) -> None:
    """Join the group torchrun prepared (MASTER_ADDR/PORT come from its environment)."""
    if not info.enabled or dist.is_initialized():
        return
    options = {}
    if device_type == "cuda":
        # One GPU per process, LOCAL_RANK's, set before nccl starts; naming it binds the group
        # to it (a barrier otherwise guesses the device from the global rank).
        torch.cuda.set_device(info.local_rank)
        options["device_id"] = torch.device("cuda", info.local_rank)
    dist.init_process_group(
        backend=BACKENDS[device_type if device_type == "cuda" else "cpu"], rank=info.rank,
        world_size=info.world_size, **options,
    )  # fmt: skip


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
    if not info.enabled:
        return t
    if t.device.type == "cpu" and _cpu_collective_device().type != "cpu":
        t.copy_(all_reduce_sum(t.to(_cpu_collective_device()), info).cpu())
        return t
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (e.g. the run directory name)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class RngStates(list):
    """Every rank's CPU RNG state (the list itself), and in ``cuda`` every rank's state of its
    own CUDA device (None for one process, whose checkpoint saves all its devices' states, or
    without CUDA): a resumed run then draws the same dropout masks on the GPU."""

    def __init__(self, cpu: list[torch.Tensor], cuda: list[torch.Tensor] | None = None):
        super().__init__(cpu)
        self.cuda = cuda


def gather_rng_states(info: DistInfo) -> RngStates:
    """Every rank's CPU RNG state (dropout masks differ per rank) and, under DDP with CUDA, its
    CUDA device's (``RngStates.cuda``), gathered on all ranks."""
    if not info.enabled:
        return RngStates([torch.get_rng_state()])
    cpu = _all_gather(torch.get_rng_state(), info)
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return RngStates(cpu)
    # the current device: LOCAL_RANK's (init_process_group set it)
    return RngStates(cpu, _all_gather(torch.cuda.get_rng_state(), info))


def _all_gather(t: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    where = _cpu_collective_device()
    out = [torch.empty_like(t, device=where) for _ in range(info.world_size)]
    dist.all_gather(out, t.to(where))
    return [o.cpu() for o in out]


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
