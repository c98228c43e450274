"""What the code states once stays stated once (issue 19, item 2): each fact
below has one home in the C sources of lib/, workers/, ctl/ and fcgi/, and every
other file takes it from there. The sources are read as text, comments left out
(a comment may name a queue or a field to say what it is about)."""

import os
import re

from harness import SRCDIR, run_tests

FOLDERS = ("lib", "workers", "ctl", "fcgi")
# A comment, or a string or character literal (kept: it is what is looked for).
TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def code(text):
    """text with its comments blanked out, lines kept where they were."""
    return TOKEN.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else
                     "\n" * m.group(0).count("\n"), text)


def sources():
    """{path: code} of every C file of the programs and the library."""
    out = {}
    for folder in FOLDERS:
        for name in sorted(os.listdir(os.path.join(SRCDIR, folder))):
            if name.endswith((".c", ".h")):
                path = folder + "/" + name
                with open(os.path.join(SRCDIR, path), encoding="utf-8") as f:
                    out[path] = code(f.read())
    return out


def places(src, pattern, allowed=None):
    """The lines (path:line: text) that match pattern, but those allowed(path, line)."""
    found = []
    for path, text in src.items():
        for number, line in enumerate(text.splitlines(), 1):
            if re.search(pattern, line) and not (allowed and allowed(path, line)):
                found.append("%s:%d: %s" % (path, number, line.strip()))
    return found


def only_in(t, src, pattern, homes, what, allowed=None):
    """pattern occurs in the files homes, and nowhere else."""
    found = places(src, pattern, allowed)
    t.ok(found and all(p.split(":")[0] in homes for p in found),
         "%s: stated in %s only" % (what, " and ".join(homes)), "\n".join(found) or "not found")


def queue_names(t, src):
    for name in ("factory", "mail", "callback"):
        only_in(t, src, r'"%s"' % name, ["lib/queues.h"], "queue name " + name)
    t.ok(not places(src, r'\{\s*QUEUES_\w+\s*,\s*QUEUES_\w+\s*,\s*QUEUES_\w+'),
         "the list of every queue is QUEUES_ALL or queues_names, not written out again")


def sku_length(t, src):
    only_in(t, src, r"(?i)sku.*\b32\b|\b32\b.*sku", ["lib/product.h"],
            "the sku's length (PRODUCT_SKU_MAX)")
    numbered = places(src, r"char\s*\(?\*?\s*sku\w*\)?\s*\[\s*\d")
    t.ok(not numbered,
         "a sku's buffer is sized from PRODUCT_SKU_MAX (ORDER_SKU_SIZE), not by a number",
         "\n".join(numbered))


def order_statuses(t, src):
    status = r'"(open|sent|fulfilled|failed)"'
    lists = places(src, status + r".*" + status + r".*" + status)
    t.ok(not lists, "no second list of the order statuses (order_status_name and "
         "order_status_parse answer for lib/order.c's)", "\n".join(lists))
    only_in(t, src, r'"open"', ["lib/order.c"], "the status open")


def factory_message(t, src):
    only_in(t, src, r'"(MessageGroupId|MessageAttribute\w*|CallbackUrl)"', ["lib/factory_msg.h"],
            "the factory request's fields")
    only_in(t, src, r'"token"', ["lib/factory_msg.c"], "the factory message's token field")
    only_in(t, src, r'"kind"\s*,\s*"stock_empty"|"stock_empty"\s*\)\s*!=|"kind".*FACTORY_MSG_KIND',
            ["lib/factory_msg.c"], "the factory message's kind, written and checked")


def statement_tables(t, src):
    loops = places(src, r"db_stmt_new\([^;]*\w+_sql\[")
    t.ok(not loops, "a table of statements is made by db_stmt_table, not a loop of its own",
         "\n".join(loops))
    shapes = [path for path, text in src.items()
              if re.search(r"const char \*sql;\s*int flags;", text)]
    t.ok(shapes == ["lib/db.h"], "a statement's SQL and flags are struct db_stmt_def (lib/db.h)",
         " ".join(shapes))


def spool_names(t, src):
    # A spool_each_fn that keeps each name (strdup of its name argument).
    only_in(t, src, r"=\s*strdup\(name\)", ["lib/spool.c"],
            "collecting a state's file names (spool_names_of)")


def deadlocks(t, src):
    # What an error means is lib/db's to tell (db_retryable, db_failed_connection,
    # db_error_class), never a match in its text.
    matched = places(src, r'strstr\([^;]*"[^"]*\(\d{4}\)')
    t.ok(not matched, "no error is recognised by the code in its text", "\n".join(matched))


def prefixes(t, src):
    # A function is named after the module that defines it (docs/design.md §6), so
    # that a name never says it is another module's: drivers.c's statics are
    # drivers_factory_…, not factory_… (workers/factory.c's). restockctl's are ctl_.
    wrong = []
    for path, text in src.items():
        if not path.endswith(".c"):
            continue
        stem = "ctl" if path == "ctl/restockctl.c" else os.path.basename(path)[:-2]
        for m in re.finditer(r"^([a-z_][a-z0-9_]*)\(", text, re.M):
            if m.group(1) != "main" and not m.group(1).startswith(stem + "_"):
                wrong.append("%s: %s" % (path, m.group(1)))
    t.ok(not wrong, "every function defined in a module is named with its module's prefix",
         "\n".join(wrong))


def body(t):
    src = sources()
    queue_names(t, src)
    sku_length(t, src)
    order_statuses(t, src)
    factory_message(t, src)
    statement_tables(t, src)
    spool_names(t, src)
    deadlocks(t, src)
    prefixes(t, src)


run_tests(body)
