//! The one integration-test binary: every test file under `tests/integration/` is a
//! module of it, so cargo links the dependency tree once instead of once per file.
//!
//! The hermetic tests run under plain `cargo test`. The `#[ignore]`d ones need root, a
//! tool or the mail stack; `scripts/test-all.sh` runs them by module, e.g.
//! `cargo test --test integration -- --ignored stack_integration::`. The helpers they
//! share are in `tests/support/`; [`support::serial`] keeps timing-sensitive tests from
//! interfering with their neighbours.

#[path = "../support/mod.rs"]
mod support;

mod audit_knot;
mod cli;
mod dashboards_live;
mod delivery_hostile;
mod delivery_stack;
mod deploy_files;
mod hardening;
mod hardening_web;
mod lifecycle;
mod oauth;
mod oauth_cli;
mod oauth_stack;
mod probe_scripted;
mod stack_integration;
