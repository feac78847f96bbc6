"""Threads that end with their work, so that torch's thread teams end with them.

torch on CPU runs its parallel work (matrix products, large copies) through GNU OpenMP.
Every thread that runs such work keeps a team of helper threads for as long as it lives.
Once the helpers of all teams outnumber the cores, libgomp stops letting idle helpers
spin and puts them to sleep after every parallel region, and waking them costs more
than a small product takes. On the 2-core AMD EPYC this was measured on, a decode step
of two batched rows took 108 ms in a thread started after another thread had loaded the
model and stayed alive, against 65 ms with no such thread (four rows: 151 against 87 ms;
``bench/parallel.py``'s "2 at once" went from 1.16x to 1.8x one at a time).

Textual runs a ``@work(thread=True)`` worker on the event loop's default executor,
whose threads live as long as the app. The worker that loaded the model (or probed the
machine, or generated alone) thus kept its team, and slowed every batch after it.
:class:`ThreadPerJob` is that executor with one thread per job, which ends with the job.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Callable
from typing import Any

_NUMBERS = itertools.count(1)


class ThreadPerJob(concurrent.futures.ThreadPoolExecutor):
    """An executor (usable as asyncio's default one) that runs every job in a new thread
    of its own. As with ``ThreadPoolExecutor``, the threads are not daemons: the
    interpreter waits for a job that is running when it exits, and ``shutdown(wait=True)``
    waits for them all."""

    def __init__(self, name: str = "job") -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._live: set[threading.Thread] = set()
        self._guard = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # as ThreadPoolExecutor does
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._guard:
                    self._live.discard(threading.current_thread())

        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            thread = threading.Thread(target=run, name=f"{self._name}_{next(_NUMBERS)}")
            self._live.add(thread)
        thread.start()
        return future

    def running(self) -> int:
        """Jobs whose thread is still alive."""
        with self._guard:
            return len(self._live)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            self._closed = True
            threads = list(self._live)
        super().shutdown(wait=False)
        if wait:
            for thread in threads:
                thread.join()
