"""Where tasks run: ``local`` (in this process, or ``workers`` processes) or ``ray``.

Tasks return their outputs to the driver, which alone writes files; so a Ray cluster needs no
shared filesystem, and an interrupted run never leaves a half-written task behind. Every task sets
its own torch thread count (``tasks.execute_group``), so results do not depend on the executor.

Worker processes die with the driver: each watches its parent's pid (and, on Linux, asks the kernel
for SIGKILL when the parent dies), so killing a run, even by SIGKILL, leaves no worker behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from .._lifeline import die_with_parent
from ..errors import ConfigError
from .tasks import execute_group

Done = Callable[[list[dict], list[dict]], None]  # (specs of a group, their payloads)


def _worker(specs: list[dict], lockstep: bool, log_rounds: bool = False) -> list[dict]:
    return execute_group(specs, lockstep, log_rounds)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and kill running workers now (not after their current task)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.kill()
    for p in processes:
        p.join(timeout=5)


def run_local(
    groups: Iterable[list[dict]],
    on_done: Done,
    *,
    workers: int = 1,
    lockstep: bool = True,
    log_rounds: bool = False,
) -> None:
    groups = list(groups)
    if workers <= 1 or len(groups) <= 1:
        for specs in groups:
            on_done(specs, execute_group(specs, lockstep, log_rounds))
        return
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(groups)),
        mp_context=get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(_worker, g, lockstep, log_rounds): g for g in groups}
        for future in as_completed(futures):
            on_done(futures[future], future.result())
    except BaseException:  # an error, Ctrl-C or SIGTERM turned into an exception: stop at once
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def gpus_per_task(specs: list[dict], requested: float | None, cluster_gpus: float) -> float:
    """GPUs a Ray task asks for: ``requested`` when given; else one when its device is CUDA, or is
    ``auto`` on a cluster that has GPUs (Ray hides every GPU from a task that asks for none)."""
    if requested is not None:
        return float(requested)
    device = str(specs[0]["training"].get("device", "cpu"))
    if device.startswith("cuda"):
        if cluster_gpus <= 0:
            raise ConfigError(
                f"training.device is {device!r} but the Ray cluster has no GPUs; use device: auto "
                "or cpu, or join a cluster with GPUs"
            )
        return 1.0
    if device == "auto" and cluster_gpus > 0:
        return 1.0
    return 0.0


def run_ray(
    groups: Iterable[list[dict]],
    on_done: Done,
    *,
    address: str | None = None,
    workers: int | None = None,
    lockstep: bool = True,
    gpus: float | None = None,
) -> None:
    """Each group a Ray task; ``gpus`` per task (default: see :func:`gpus_per_task`)."""
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
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(_worker)
        pending = {}
        for g in groups:
            options = {"num_gpus": gpus_per_task(g, gpus, cluster_gpus)}
            pending[remote.options(**options).remote(g, lockstep)] = g
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                on_done(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()
