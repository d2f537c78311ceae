"""Where tasks run: ``local`` (in this process, or ``workers`` processes) or ``ray``.

Tasks return their outputs to the driver, which alone writes files; so a Ray cluster needs no
shared filesystem, and an interrupted run never leaves a half-written task behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from ..errors import ConfigError
from .tasks import execute_group

Done = Callable[[list[dict], list[dict]], None]  # (specs of a group, their payloads)


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _worker(specs: list[dict], lockstep: bool, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    return execute_group(specs, lockstep)


def run_local(
    groups: Iterable[list[dict]], on_done: Done, *, workers: int = 1, lockstep: bool = True
) -> None:
    groups = list(groups)
    if workers <= 1 or len(groups) <= 1:
        for specs in groups:
            on_done(specs, execute_group(specs, lockstep))
        return
    threads = _threads_per_worker(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_worker, g, lockstep, threads): g for g in groups}
        for future in as_completed(futures):
            on_done(futures[future], future.result())


def run_ray(
    groups: Iterable[list[dict]],
    on_done: Done,
    *,
    address: str | None = None,
    workers: int | None = None,
    lockstep: bool = True,
) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray: pip install 'secateurs[ray]' (or pip install ray)"
        ) from None
    started = False
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": workers or os.cpu_count()}
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **kwargs)
        started = True
    try:
        remote = ray.remote(_worker)
        threads = 1 if address else _threads_per_worker(workers or 1)
        pending = {}
        for g in groups:
            pending[remote.remote(g, lockstep, threads)] = g
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                on_done(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()
