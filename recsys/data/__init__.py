"""Data layer: canonical tables, adapters and presets, inventory, cleaning, features, synthetic logs.

Entry point for other areas: ``recsys.data.adapters.read_input(input_cfg, table)`` -> Ray Dataset;
on-disk layouts of the data jobs are in docs/DATA.md (readers in ``recsys.data.layout``).
"""
