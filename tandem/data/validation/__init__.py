"""Validating shared batches with Great Expectations.

``suites`` defines the expectation suites (generated from the batch schema, kept as JSON under
``expectations/``), ``runner`` runs them on a batch, ``reasons`` turns a GX result into one
readable, redacted line.
"""

from tandem.data.validation.runner import BatchVerdict, validate_batch

__all__ = ["BatchVerdict", "validate_batch"]
