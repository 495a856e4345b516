"""Sharing ``eval`` and ``inpaint`` work across the processes of ``torchrun --nproc_per_node N``.

Each rank takes a disjoint share of the samples (or images) and rank 0 merges: it alone writes the CSV and
the run records. Work is dealt round-robin: item ``j`` goes to rank ``j % N``. The ranks talk over a gloo
group (small Python objects only: rows, file names, errors), so the same code serves CPU and CUDA runs; each
rank computes on ``cuda:LOCAL_RANK`` when the device is CUDA.

A rank that fails must not leave the others waiting in a collective: every step that can fail runs through
:meth:`Ranks.agree`, which gathers each rank's error (or none) and raises on every rank. The rank at fault
re-raises its own exception; the others raise a one-line :class:`BlindbenchError` naming that rank.

Library callers that already joined a process group call ``run_eval`` / ``run_inpaint`` on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from blindbench.errors import BlindbenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, index: int) -> bool:
        """Whether item ``index`` of a list every rank sees in the same order is this rank's."""
        return index % self.world == self.rank

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items of ``items`` (round-robin)."""
        return list(items[self.rank :: self.world])

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        values: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(values, value)
        return values

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        return self.gather(value)[0]

    def agree(self, step: Callable[[], T]) -> T:
        """Run ``step`` on every rank; if it raised anywhere, raise on every rank (see the module docstring)."""
        try:
            result, error = step(), None
        except Exception as exc:  # noqa: BLE001 - carried to the other ranks, then re-raised unchanged
            result, error = None, exc
        self.check(error)
        return result

    def check(self, error: BaseException | None) -> None:
        """Raise on every rank when any rank passes an error (this rank's own exception first)."""
        if self.world > 1:
            messages = self.gather(None if error is None else f"{type(error).__name__}: {error}".splitlines()[0])
        else:
            messages = [None]
        if error is not None:
            raise error
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        if failed:
            rank, message = failed[0]
            raise BlindbenchError(f"rank {rank} of {self.world} stopped: {message.partition(': ')[2] or message}")

    def device(self, device: torch.device) -> torch.device:
        """``cuda:LOCAL_RANK`` for a CUDA device (each rank its own GPU), else ``device``."""
        if device.type != "cuda" or self.world == 1:
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)


@contextmanager
def joined_ranks() -> Iterator[Ranks]:
    """The ranks of this run: joins a gloo group when torchrun set ``WORLD_SIZE`` > 1 (left again at exit),
    uses a group the caller already joined, else one rank.

    Raises:
        BlindbenchError: ``WORLD_SIZE`` > 1 but the group cannot be joined (not started by torchrun).
    """
    distributed = torch.distributed.is_available()
    if distributed and torch.distributed.is_initialized():
        yield Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip
        return
    world = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if world <= 1 or not distributed:
        yield Ranks()
        return
    try:
        torch.distributed.init_process_group(backend="gloo")
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BlindbenchError(f"WORLD_SIZE={world} but the process group cannot be joined ({reason}); launch with "
                              f"torchrun, or unset WORLD_SIZE for one process") from None  # fmt: skip
    try:
        yield Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip
        # every rank done with the group before any tears it down (else gloo may abort a rank at exit)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
