"""The device gateway: the door real phones come through (docs/wire-format.md). Stateless: every piece
of state lives in the store under ``gateway/`` and is written create-only, so replicas share it."""
