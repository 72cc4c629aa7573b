"""Prefect tasks: thin wrappers over `tandem`, one per stage."""
