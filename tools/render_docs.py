"""Re-render (or check) the generated tables of a Markdown document from committed results.

A generated block names the command that writes it, and holds that command's output::

    <!-- generated: budgetsched report results/suite.jsonl.gz --format md -->
    ... the command's stdout ...
    <!-- end generated -->

``python tools/render_docs.py docs/results.md`` runs each block's command (in-process, from the repository root) and
writes its output into the block; ``--check`` writes nothing and exits 1 naming each block whose committed text
differs from what the committed results render to (with a short diff), so a table can never drift from its data.
Only ``budgetsched`` commands are allowed in a block; every path in them is relative to the repository root.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated: (?P<cmd>[^\n]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def run_command(command: str) -> str:
    """The stdout of one ``budgetsched ...`` command, run in-process from the repository root."""
    from budgetsched.cli import main

    argv = shlex.split(command)
    if not argv or argv[0] != "budgetsched":
        raise SystemExit(f"render_docs: a generated block must run a budgetsched command, got {command!r}")
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            code = main(argv[1:])
    finally:
        os.chdir(cwd)
    if code != 0:
        raise SystemExit(f"render_docs: {command!r} exited with {code}")
    text = out.getvalue()
    return text if text.endswith("\n") else text + "\n"


def render(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``text`` with every generated block re-rendered, and the (command, old body, new body) of each block."""
    blocks: list[tuple[str, str, str]] = []

    def replace(m: re.Match) -> str:
        new = run_command(m.group("cmd"))
        blocks.append((m.group("cmd"), m.group("body"), new))
        return m.group(1) + new + m.group(4)

    return BLOCK.sub(replace, text), blocks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("docs", nargs="+", help="Markdown files with generated blocks")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block differs")
    args = ap.parse_args(argv)
    stale = 0
    for doc in args.docs:
        path = Path(doc)
        text = path.read_text(encoding="utf-8")
        new, blocks = render(text)
        if not blocks:
            print(f"{doc}: no generated blocks", file=sys.stderr)
            return 2
        for cmd, old, body in blocks:
            if old != body:
                stale += 1
                if args.check:
                    diff = list(difflib.unified_diff(old.splitlines(), body.splitlines(), "committed", "rendered",
                                                     lineterm="", n=1))
                    print(f"{doc}: the block of {cmd!r} differs from what its results render to:\n"
                          + "\n".join(diff[:40]), file=sys.stderr)
        if not args.check and new != text:
            path.write_text(new, encoding="utf-8")
        print(f"{doc}: {len(blocks)} generated blocks, {stale} {'stale' if args.check else 'rewritten'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
