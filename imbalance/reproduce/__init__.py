"""The reproduction behind ``imbalance reproduce``: each part is a function that returns
a :class:`Section` (narrative, tidy rows, figures) with its :class:`Check` s, so the CLI,
the notebooks and the tests call the same code."""

from .adamw_shared import adamw_shared_section
from .dynamics import lm_gap_section, token_dynamics_section
from .exact import bigram_section, margin_section, unigram_section
from .factored import factored_section, ufm_section
from .fair_optim import fair_optimizer_section
from .report import Check, Section, Settings, timed, write_report
from .simulated import bigram_sim_section, feature_section, lm_paradox_section, margin_sim_section

__all__ = ["Check", "Section", "Settings", "write_report", "run", "SECTIONS", "unigram_section", "margin_section",
           "margin_sim_section", "bigram_section", "bigram_sim_section", "feature_section", "ufm_section",
           "factored_section", "lm_paradox_section", "token_dynamics_section", "lm_gap_section",
           "adamw_shared_section", "fair_optimizer_section"]

SECTIONS = (unigram_section, margin_section, margin_sim_section, bigram_section, bigram_sim_section,
            token_dynamics_section, feature_section, ufm_section, factored_section, adamw_shared_section,
            lm_paradox_section, lm_gap_section, fair_optimizer_section)


def run(st: Settings, progress=print) -> list[Section]:
    """Every section, in the order of the report; ``progress`` is told each section's start and
    the wall-clock seconds it took (also kept in ``Section.seconds``)."""
    out = []
    for make in SECTIONS:
        name = make.__name__.removesuffix("_section")
        if progress is not None:
            progress(f"[reproduce] {name} ...")
        out.append(timed(make, st))
        if progress is not None:
            progress(f"[reproduce] {name}: {out[-1].seconds:.1f} s")
    return out
