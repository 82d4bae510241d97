//! End-to-end tests and the mock Anthropic Messages server.
