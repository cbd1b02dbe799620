"""Reports derived from a run's spans: summary tables, exports and figures.

The figure module imports matplotlib, so it is not imported here: a
participant or a ``--json`` summary never pays for it.
"""

from .export import export_run, export_spans
from .summary import Quantiles, SplitRow, summarize, summary_to_dicts

__all__ = [
    "Quantiles",
    "SplitRow",
    "export_run",
    "export_spans",
    "summarize",
    "summary_to_dicts",
]
