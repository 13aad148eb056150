"""The pipeline: stages (existing jobs) keyed by a hash of their inputs, quality gates, registry, lineage."""
