"""The prediction API Lambda behind API Gateway: request checks, the endpoint call with its timeout
chain, and the one mapping of errors to HTTP answers (docs/api.md)."""
