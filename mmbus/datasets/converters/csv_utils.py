"""Small CSV helpers shared by the CSV-driven converters (BUS-BRA, generic, boxes CSV)."""
from __future__ import annotations

import csv
from typing import Dict, List, Optional, Sequence, Tuple

from .common import ProblemLog


def read_csv_rows(path: str, rel: str, problems: ProblemLog) -> Optional[List[Dict[str, str]]]:
    """Rows of a CSV file as dicts with lower-cased, stripped header names.

    Returns ``None`` (and logs an error naming the file) when the file is missing or
    unreadable. Each row gets ``'_line'`` = its 1-based line number for messages.
    """
    try:
        with open(path, newline='', encoding='utf-8-sig') as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                problems.error(rel, 'CSV file is empty (no header row)')
                return None
            keys = [h.strip().lower() for h in header]
            rows = []
            for lineno, values in enumerate(reader, start=2):
                if not any(v.strip() for v in values):
                    continue
                row = {k: (values[i].strip() if i < len(values) else '')
                       for i, k in enumerate(keys)}
                row['_line'] = str(lineno)
                rows.append(row)
            return rows
    except FileNotFoundError:
        problems.error(rel, 'CSV file not found')
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.error(rel, f'unreadable CSV ({type(exc).__name__}: {exc})')
    return None


def pick_column(rows: Sequence[Dict[str, str]], names: Tuple[str, ...]) -> Optional[str]:
    """First of ``names`` present in the header of ``rows`` (``None`` if absent)."""
    if not rows:
        return None
    for n in names:
        if n in rows[0]:
            return n
    return None
