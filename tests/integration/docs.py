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


# Names design.md gives that are not restock's own: MariaDB's and systemd's
# settings, the naming convention's placeholders, a build product.
FOREIGN = {"wait_timeout", "x_new", "x_destroy", "lib/librestock.a", "sql/NNN_",
           "innodb_lock_wait_timeout", "evs.inactive_timeout", "wsrep_ready",
           "wsrep_reject_queries", "max_connections", "extra_port", "extra_max_connections",
           "lock_wait_timeout", "innodb_rollback_on_timeout", "time_zone", "listen_sock"}


def tracked(root):
    p = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True)
    if p.returncode == 0 and p.stdout:
        return p.stdout.split()
    # A release tarball is no git checkout: every file below the root.
    return [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
            for f in fs]


def design_names(t):
    """Every function, identifier and path docs/design.md gives in backquotes is
    one of the tree's (a renamed or removed one fails here), the layering picture
    is the code's, and every module has its row."""
    with open(os.path.join(SRCDIR, "docs", "design.md"), encoding="utf-8") as f:
        doc = f.read()
    files = tracked(SRCDIR)
    words = set()
    for name in files:
        if name.endswith(".md") or name.startswith("docs/"):
            continue
        try:
            with open(os.path.join(SRCDIR, name), encoding="utf-8", errors="replace") as f:
                words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f.read()))
        except (IsADirectoryError, FileNotFoundError):
            pass
    unknown = {}
    for m in re.finditer(r"`([^`\n]+)`", doc):
        tok = m.group(1)
        names = re.findall(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\s*\(", tok)
        if re.fullmatch(r"[a-z][a-z0-9]*_[a-z0-9_]+", tok):
            names.append(tok)
        for path in re.findall(r"(?<![\w/.])((?:lib|fcgi|workers|ctl|tests|sql|packaging|scripts|nginx|docs)"
                               r"/[\w./-]*\w)", tok):
            if not any(f == path or f.startswith(path) for f in files):
                names.append(path)
        for name in names:  # a path here is one the tree does not have
            if name not in FOREIGN and ("/" in name or name not in words):
                unknown.setdefault(name, doc.count("\n", 0, m.start()) + 1)
    t.ok(not unknown, "every name design.md gives is the code's",
         ", ".join("%s (line %d)" % kv for kv in sorted(unknown.items(), key=lambda kv: kv[1])))

    p = subprocess.run([os.path.join(SRCDIR, "scripts", "layering"), "--print"],
                       capture_output=True, text=True)
    t.ok(p.returncode == 0, "lib/'s includes form no cycle", p.stderr)
    begin = doc.index("```\n", doc.index("<!-- layering:begin")) + 4
    t.ok(doc[begin:doc.index("```\n<!-- layering:end -->")] == p.stdout,
         "design.md's layering picture is the code's", "rewrite it: scripts/layering")

    programs = {d: {os.path.splitext(os.path.basename(f))[0] for f in files
                    if f.startswith(d + "/") and f.endswith(".h")}
                for d in ("fcgi", "workers", "ctl")}
    crossing = []
    for f in files:
        top = f.split("/")[0]
        if top not in ("lib", "fcgi", "workers", "ctl") or not f.endswith((".c", ".h")):
            continue
        with open(os.path.join(SRCDIR, f), encoding="utf-8") as src:
            included = set(re.findall(r'^#include "([a-z_0-9]+)\.h"', src.read(), re.M))
        for d, headers in programs.items():
            if d != top and included & headers:
                crossing.append("%s includes %s's %s" % (f, d, ", ".join(sorted(included & headers))))
    t.is_(crossing, [], "lib/ includes no program's header, and no program another's")

    rows = set(re.findall(r"^\| `((?:lib|workers|ctl|fcgi)/[a-z_0-9.]+)`", doc, re.M))
    modules = {os.path.splitext(f)[0] for f in files
               if re.match(r"(lib|workers|ctl)/[a-z_0-9]+\.c$", f)}
    modules -= {"workers/worker", "ctl/restockctl"}  # the programs: the table of programs
    t.is_(sorted(modules - rows), [], "every module has its row in design.md's module table")

    listed = doc[doc.index("Modules without a unit test of their"):]
    listed = set(re.findall(r"`([a-z_0-9]+)`", listed[:listed.index(")")]))
    untested = {m.split("/")[1] for m in modules
                if "tests/unit/%s_test.c" % m.split("/")[1] not in files}
    t.is_(sorted(listed), sorted(untested), "design.md lists the modules without a unit test")


def both(t):
    body(t)
    examples_load(t)
    design_names(t)


run_tests(both)
