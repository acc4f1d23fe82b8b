"""What the generators share: the cores they may use, and their progress bar."""
import os
import sys


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; os.cpu_count() where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def progress_bar(total, unit):
    """A tqdm bar on stderr with rate and ETA; redrawn at most every 30 s when stderr is not a
    terminal (a log file), so a log gets a line per 30 s, not one per update."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, unit=unit, file=sys.stderr, mininterval=0.1 if tty else 30,
                dynamic_ncols=tty, smoothing=0.1)
