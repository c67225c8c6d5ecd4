"""Process limits for holding many sockets."""

from __future__ import annotations

import resource


def raise_open_files(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards `wanted` (the hard limit too, when allowed); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        # Not privileged: the hard limit is as far as this process may go.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def socket_room(reserve: int) -> int:
    """How many client sockets the process may hold: its open-files limit less `reserve` descriptors kept for its
    own connections (at least one)."""
    return max(1, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - reserve)
