"""Fan-out of engine events: each subscriber gets every event, in order, on a thread of its own, so a
slow subscriber (a busy terminal, a blocked pipe) never stalls the worker or the GPU."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ..events import Event

Subscriber = Callable[[Event], None]
_STOP = object()
log = logging.getLogger(__name__)


class _Delivery:
    def __init__(self, callback: Subscriber):
        self.callback = callback
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="cogedit-events", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (event := self.queue.get()) is not _STOP:
            try:
                self.callback(event)
            except Exception:  # a broken subscriber must not take the others (or the worker) down
                log.exception("event subscriber failed")


class EventBus:
    """``publish`` never blocks; ``subscribe`` returns the function that unsubscribes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[_Delivery] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        delivery = _Delivery(callback)
        with self._lock:
            self._deliveries.append(delivery)

        def unsubscribe(wait: bool = True) -> None:
            with self._lock:
                if delivery not in self._deliveries:
                    return
                self._deliveries.remove(delivery)
            delivery.queue.put(_STOP)
            if wait and threading.current_thread() is not delivery.thread:
                delivery.thread.join()

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            deliveries = list(self._deliveries)
        for delivery in deliveries:
            delivery.queue.put(event)

    def close(self, wait: bool = True) -> None:
        """Deliver what is queued, then stop every subscriber's thread."""
        with self._lock:
            deliveries, self._deliveries = self._deliveries, []
        for delivery in deliveries:
            delivery.queue.put(_STOP)
        if wait:
            for delivery in deliveries:
                if threading.current_thread() is not delivery.thread:
                    delivery.thread.join()
