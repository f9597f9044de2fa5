//! The one integration-test binary: every test file under `tests/integration/` is a
//! module of it, so cargo links the dependency tree once instead of once per file.
//!
//! The hermetic tests run under plain `cargo test`. The `#[ignore]`d ones need root, a
//! tool or the mail stack; `scripts/test-all.sh` runs them by module, e.g.
//! `cargo test --test integration -- --ignored stack_integration::`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../deploy_support/mod.rs"]
mod deploy_support;
#[path = "../harness/mod.rs"]
mod harness;
#[path = "../hostile/mod.rs"]
mod hostile;
#[path = "../oauth_support/mod.rs"]
mod oauth_support;
#[path = "../stack_support/mod.rs"]
mod stack_support;

mod audit_knot;
mod cli;
mod dashboards_live;
mod deploy_files;
mod hardening;
mod hardening_web;
mod lifecycle;
mod oauth;
mod oauth_cli;
mod oauth_stack;
mod probe_scripted;
mod stack_integration;
