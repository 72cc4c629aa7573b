"""Prefect tasks: each wraps one step of `tandem.pipeline`, one to one, and adds only what Prefect
adds (names, retries, the publish lock, artifacts)."""
