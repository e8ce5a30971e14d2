"""The pipeline machinery: runs, cached steps, cache keys, artifacts, preflight, the reference run."""
