"""The runtime: the worker (queue, batching, device affinity), one thread per device, the event bus."""
