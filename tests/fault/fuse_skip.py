"""tests/fault/fuse_skip.py: the tests on the power-cut file system (powercutfs.py)
need /dev/fuse, root (its mounts use allow_other) and Debian's python3-pyfuse3;
without one of them they print a TAP skip saying which, and exit 0."""

import os
import sys


def skip_unless_fuse():
    why = None
    if not os.path.exists("/dev/fuse"):
        why = "no /dev/fuse"
    elif os.geteuid() != 0:
        why = "not root (the mount uses allow_other)"
    else:
        try:
            import pyfuse3  # noqa: F401
        except ImportError:
            why = "no pyfuse3 (Debian's python3-pyfuse3; scripts/deps test)"
    if why:
        print("1..0 # SKIP %s" % why, flush=True)
        sys.exit(0)
