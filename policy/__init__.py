"""The ml-platform policy pack: rules from RELIABILITY.md as code (see docs/policy.md)."""
