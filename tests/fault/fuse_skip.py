"""tests/fault/fuse_skip.py: the tests on the power-cut file system (powercutfs.py)
need /dev/fuse, root (its mounts use allow_other) and Debian's python3-pyfuse3;
without one of them they print a TAP skip saying which, and exit 0."""

import os
import sys


def why_no_fuse():
    """What is missing for a powercutfs mount, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.geteuid() != 0:
        return "not root (the mount uses allow_other)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "no pyfuse3 (Debian's python3-pyfuse3; scripts/deps test)"
    return None


def skip_unless_fuse():
    why = why_no_fuse()
    if why:
        print("1..0 # SKIP %s" % why, flush=True)
        sys.exit(0)
