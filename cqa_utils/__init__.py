"""cqa_utils: the thin library behind the CQA replication book (one module per pipeline stage)."""

__version__ = "0.1.0"
