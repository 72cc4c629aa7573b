"""Tandem: the server half of server/device training for iOS apps."""

__version__ = "0.1.0"
