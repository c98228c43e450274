# conf2man.awk: makes restock.conf(5) from its template and the output of
# `restockctl config defaults`, so that the manual lists every key of the
# parameter table (lib/conf.c) with its default and documentation, and cannot
# drift from the programs.
#   restockctl config defaults | awk -v version=V -f conf2man.awk - restock.conf.5.in
# Input 1 (the defaults): "## Section" headings, "# doc" lines, "#key = default".
# Input 2 (the template): copied, "@KEYS@" replaced by the keys, "@VERSION@" by V.

function roff(s) { # text safe in a roff line: backslashes, leading dot or quote
    gsub(/\\/, "\\e", s)
    sub(/^[.']/, "\\\\&&", s)
    return s
}
function literal(s) { # a key or value: also no hyphenation, minus signs
    s = roff(s)
    gsub(/-/, "\\-", s)
    return s
}

FNR == NR {
    if ($0 ~ /^## /) {
        keys = keys ".SS \"" roff(substr($0, 4)) "\"\n"
        seen_section = 1
    } else if (seen_section && $0 ~ /^#[a-z_][a-z0-9_]* =/) {
        key = $0
        sub(/^#/, "", key)
        sub(/ =.*/, "", key)
        value = $0
        sub(/^#[a-z_][a-z0-9_]* = ?/, "", value)
        keys = keys ".TP\n.B " literal(key) "\nDefault: " \
            (value == "" ? "empty." : "\\fB" literal(value) "\\fR.") "\n" doc
        doc = ""
        nkeys++
    } else if (seen_section && $0 ~ /^# /) {
        doc = doc roff(substr($0, 3)) "\n"
    }
    next
}

/^@KEYS@$/ {
    if (nkeys == 0) {
        print "conf2man.awk: no keys in the defaults (is restockctl broken?)" > "/dev/stderr"
        exit 1
    }
    printf "%s", keys
    next
}

{
    gsub(/@VERSION@/, version)
    print
}
