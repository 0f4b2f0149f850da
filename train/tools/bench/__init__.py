"""The scaling benchmark: throughput and memory of each mixer against sequence length, at matched size.

From Python: `rows = run_bench(BenchConfig(...))`, then `summarize(rows)`; `quick()` is the short preset.
"""

from .config import DEFAULT_MIXERS, BenchConfig, MixerSpec, parse_mixer, quick
from .measure import MODES, Point, measure_point
from .output import replot, write_outputs
from .powerlaw import Crossover, PowerLaw, crossover, fit_power_law
from .results import COLUMNS, STATUSES, read_csv
from .run import run_bench
from .summary import format_summary, summarize

__all__ = [
    "COLUMNS", "DEFAULT_MIXERS", "MODES", "STATUSES", "BenchConfig", "Crossover", "MixerSpec", "Point", "PowerLaw",
    "crossover", "fit_power_law", "format_summary", "measure_point", "parse_mixer", "quick", "read_csv", "replot",
    "run_bench", "summarize", "write_outputs",
]
