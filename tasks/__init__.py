"""Prefect tasks: each wraps one step of `tandem.pipeline` (the privacy audit: `tandem.evaluation`'s
step, which the pipeline layer may not import), one to one, and adds only what Prefect adds (names,
retries, the publish lock, artifacts)."""
