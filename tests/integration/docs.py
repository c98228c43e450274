"""The README tells the truth: its configuration reference is exactly what
`restockctl config defaults` prints (the parameter table of lib/conf.c), and it
shows the two Quick start commands. Every configuration example of the README,
docs/operations.md, docs/scaling.md and restock.conf(5), copied as it stands, loads, and no comment
after a value ends up in the value."""

import os
import re
import subprocess
import tempfile

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
         "regenerate the block between conf:begin and conf:end: scripts/conf-block")
    for command in ("./scripts/run", "./scripts/test"):
        t.ok(command in readme, "README shows the Quick start command " + command)


LINE = re.compile(r"^\s*[a-z_]+\s*=")


def examples():
    """(where, text) of each configuration example: a fenced block without a
    language in the Markdown files (the conf reference excepted: it is all
    comments), an .nf block of key = value lines in the man page."""
    for name in ("README.md", os.path.join("docs", "operations.md"),
                 os.path.join("docs", "scaling.md")):
        with open(os.path.join(SRCDIR, name), encoding="utf-8") as f:
            text = f.read()
        fence, start, block = None, 0, []
        for number, line in enumerate(text.splitlines(), 1):
            if fence is None and line.startswith("```"):
                fence, start, block = line[3:], number + 1, []
            elif fence is not None and line == "```":
                lines = [l for l in block if l.strip() and not l.lstrip().startswith("#")]
                if fence == "" and lines and all(LINE.match(l) for l in lines):
                    yield "%s:%d" % (name, start), "".join(l + "\n" for l in block)
                fence = None
            elif fence is not None:
                block.append(line)
    with open(os.path.join(SRCDIR, "packaging", "man", "restock.conf.5.in"), encoding="utf-8") as f:
        text = f.read()
    for m in re.finditer(r"^\.nf\n\.RS\n(.*?)^\.RE$", text, re.S | re.M):
        block = m.group(1).replace("\\e", "\\")
        if all(LINE.match(l) for l in block.splitlines()):
            yield "restock.conf.5.in:%d" % (text.count("\n", 0, m.start()) + 3), block


def examples_load(t):
    seen = 0
    for where, block in examples():
        seen += 1
        with tempfile.NamedTemporaryFile("w", suffix=".conf", encoding="utf-8") as f:
            f.write(block)
            f.flush()
            p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl"), "-c", f.name,
                                "config", "show"], capture_output=True, text=True)
        t.is_(p.returncode, 0, "the example at %s loads as it stands" % where)
        if p.returncode != 0:
            t.diag(p.stderr)
            continue
        from_file = [l.split("\t#", 1)[0] for l in p.stdout.splitlines() if l.endswith("# " + f.name)]
        t.is_(len(from_file), len([l for l in block.splitlines() if LINE.match(l)]),
              "every key of %s is set from the file" % where)
        quoted = {l.split("=", 1)[0].strip() for l in block.splitlines()
                  if LINE.match(l) and l.split("=", 1)[1].strip().startswith('"')}
        kept = [l for l in from_file
                if re.search(r"\s#", l) and l.split(" = ", 1)[0] not in quoted]
        t.is_(kept, [], "no comment of %s is kept in a value" % where)
    t.ok(seen >= 5, "the configuration examples were found (%d)" % seen)


def both(t):
    body(t)
    examples_load(t)


run_tests(both)
