//! The in-process loopback relay behind `provider: demo`.
