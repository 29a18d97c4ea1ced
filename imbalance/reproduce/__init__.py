"""The reproduction behind ``imbalance reproduce``: each part is a function that returns
a :class:`Section` (narrative, tidy rows, figures) with its :class:`Check` s, so the CLI,
the notebooks and the tests call the same code."""

from .exact import bigram_section, bucket_means, margin_section, unigram_section
from .report import Check, Section, Settings, write_report

__all__ = ["Check", "Section", "Settings", "write_report", "run", "unigram_section", "margin_section",
           "bigram_section", "bucket_means"]


def run(st: Settings) -> list[Section]:
    """Every section, in the order of the report."""
    return [unigram_section(st), margin_section(st), bigram_section(st)]
