"""Ctrl-C while training: the first asks for a checkpoint at the next safe point, a second aborts."""

import os
import signal
import threading
from contextlib import contextmanager


@contextmanager
def sigint_asks_to_stop(epoch_mode):
    """While training, the first Ctrl-C asks fit to stop after the current step (in scan mode: the
    current epoch, one compiled call); a second aborts at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    finishing = "this epoch (one compiled call in scan mode)" if epoch_mode == "scan" else "this step"
    message = f"\nCtrl-C: finishing {finishing}, then saving a checkpoint (Ctrl-C again to abort at once)\n"

    def handle(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        os.write(2, message.encode())

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
