"""The README tells the truth: its configuration reference is exactly what
`restockctl config defaults` prints (the parameter table of lib/conf.c), and it
shows the two Quick start commands."""

import os
import subprocess

from harness import BUILDDIR, SRCDIR, run_tests


def body(t):
    with open(os.path.join(SRCDIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    begin = readme.index("<!-- conf:begin")
    block = readme[readme.index("```\n", begin) + 4:readme.index("```\n<!-- conf:end -->")]
    p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl"), "-c", "/dev/null",
                        "config", "defaults"], capture_output=True, text=True)
    t.is_(p.returncode, 0, "restockctl config defaults succeeds")
    t.ok(block == p.stdout, "README's configuration reference is restockctl config defaults",
         "regenerate the block between conf:begin and conf:end from `restockctl config defaults`")
    for command in ("./scripts/run", "./scripts/test"):
        t.ok(command in readme, "README shows the Quick start command " + command)


run_tests(body)
