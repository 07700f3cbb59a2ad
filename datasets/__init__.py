"""Collecting data: sources, validation, stratified splits and nested training subsets.

Note: this package shares its import name with Hugging Face's `datasets`; install
gainsplit in its own virtual environment.
"""

from datasets import builtin, idx, images, tables, torchvision_sources  # noqa: F401  (register the sources)
from datasets.base import SOURCES, DataWarning, RawData, SourceOptions, hash_files, parse_source, register_source
from datasets.idx import read_idx
from datasets.splits import check_class_sizes, nested_subset, stratified_split
from datasets.validate import validate


def load_source(text: str, options: SourceOptions = SourceOptions()) -> RawData:
    """Load and validate `<kind>:<argument>` (for example `csv:train.csv` or `idx:data/mnist`)."""
    source, argument = parse_source(text)
    return validate(source.load(argument, options), text)


__all__ = [
    "SOURCES",
    "DataWarning",
    "RawData",
    "SourceOptions",
    "check_class_sizes",
    "hash_files",
    "load_source",
    "nested_subset",
    "parse_source",
    "read_idx",
    "register_source",
    "stratified_split",
    "validate",
]
