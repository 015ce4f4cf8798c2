//! Shared helpers for the integration tests: start real peers on loopback.
