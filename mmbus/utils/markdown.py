"""The one Markdown table writer of the reports, model cards and tools (no heavy imports)."""
from typing import Sequence


def md_table(header: Sequence, rows: Sequence[Sequence]) -> str:
    """``| a | b |`` header, ``|---|---|`` rule, one ``| x | y |`` line per row (cells through ``str``);
    the lines joined by newlines, no trailing newline."""
    lines = ['| ' + ' | '.join(str(h) for h in header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)
