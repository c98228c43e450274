"""The worker's Prometheus exposition as the tests read it: scrape it, parse it into
{(name, frozenset(labels)): value}, read one sample."""

import re
import urllib.request

LINE = re.compile(r'^([a-z_:]+)(?:\{(.*)\})? (\S+)$')


def scrape(s):
    """(status, Content-Type, body) of the stack's METRICS_URL."""
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def parse(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = LINE.match(line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(s, name, **labels):
    """One sample's value, None when the exposition has none."""
    return parse(scrape(s)[2]).get((name, frozenset(labels.items())))
