"""Buffers lent out as views and taken back once nothing holds a view of them any more.

A download reads one block after another into memory that the socket may still be sending from
when the next block is read, so each block needs memory of its own; fresh memory for every 4 MiB
block costs page faults and zeroing in the kernel (about as much as the read itself). A lent
buffer is reused only when no view of it is left anywhere (the event loop, its transport's
write queue, a response body): CPython refuses to resize a bytearray while any view exists, and
that refusal is the test. Memory stays bounded by ``keep`` buffers plus those still in flight.
"""

from __future__ import annotations


def released(buf: bytearray) -> bool:
    """Whether no view (``memoryview``, a buffer held by C code) of ``buf`` exists any more."""
    try:
        buf.append(0)  # a resize: refused while any view is exported
    except BufferError:
        return False
    del buf[-1]
    return True


class Recycler:
    """Up to ``keep`` buffers of at least ``size`` bytes, each handed out again once released."""

    def __init__(self, keep: int, size: int) -> None:
        self._keep = keep
        self._size = size
        self._bufs: list[bytearray] = []

    def take(self, size: int) -> memoryview:
        """A view of ``size`` bytes of a released buffer (or a new one); its contents are stale."""
        for buf in self._bufs:
            if len(buf) >= size and released(buf):
                return memoryview(buf)[:size]
        buf = bytearray(max(size, self._size) + 1)
        del buf[-1]  # room for the probe in ``released``: it never moves the buffer
        if len(self._bufs) < self._keep:
            self._bufs.append(buf)
        return memoryview(buf)[:size]
