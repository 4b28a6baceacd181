#!/usr/bin/python3
"""Record what Comet decides for each realistic filter on each real event.

Comet evaluates a subscriber's filter with lxml (libxml2): it compiles the
expression with etree.XPath, parses the event with entity substitution off
and evaluates the expression with the root element as context node; the
event is sent if Python's truth value of the result is true. This script
does exactly that for every filter of realistic.json on every file of
../voevents/ and writes lxml_answers.json next to itself.

Regenerate (from the repository root, with the python3 that has lxml):

    /usr/bin/python3 testdata/filters/lxml_answers.py

Answers per filter and file:
  match          the result is true in Python (a non-empty node list, True,
                 a non-empty string, a number other than 0 or -0; NaN too)
  no-match       it is false
  eval-error     evaluation raised (undefined prefix, unknown function):
                 Comet counts that as no match
  compile-error  etree.XPath refused the expression: Comet drops the filter
"""

import json
import os
import sys

from lxml import etree

HERE = os.path.dirname(os.path.abspath(__file__))
EVENTS = os.path.join(HERE, "..", "voevents")


def main():
    with open(os.path.join(HERE, "realistic.json"), encoding="utf-8") as f:
        cases = json.load(f)
    names = sorted(n for n in os.listdir(EVENTS) if n.endswith(".xml"))
    roots = {}
    for name in names:
        with open(os.path.join(EVENTS, name), "rb") as f:
            raw = f.read()
        # Comet's parser: entity substitution disabled.
        roots[name] = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False))
    answers = []
    for case in cases:
        expr = case["filter"]
        per_file = {}
        try:
            xpath = etree.XPath(expr)
        except etree.XPathSyntaxError:
            xpath = None
        for name in names:
            if xpath is None:
                per_file[name] = "compile-error"
                continue
            try:
                result = xpath(roots[name])
            except etree.XPathEvalError:
                per_file[name] = "eval-error"
                continue
            per_file[name] = "match" if result else "no-match"
        answers.append({"filter": expr, "answers": per_file})
    out = {
        "generator": "/usr/bin/python3 testdata/filters/lxml_answers.py",
        "lxml": ".".join(map(str, etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, etree.LIBXML_VERSION)),
        "events": len(names),
        "filters": answers,
    }
    with open(os.path.join(HERE, "lxml_answers.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=False)
        f.write("\n")
    matches = sum(v == "match" for a in answers for v in a["answers"].values())
    print(f"{len(answers)} filters x {len(names)} events: {matches} matches", file=sys.stderr)


if __name__ == "__main__":
    main()
