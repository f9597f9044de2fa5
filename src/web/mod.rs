//! The HTTP side: /metrics, health, readiness, reload and the status page.
