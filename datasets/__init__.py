"""Collecting data: sources, validation and stratified splits.

Note: this package shares its import name with Hugging Face's `datasets`; install
gainsplit in its own virtual environment.
"""

from datasets.sources import SOURCES, RawData, load_source, register_source
from datasets.splits import stratified_split

__all__ = ["SOURCES", "RawData", "load_source", "register_source", "stratified_split"]
