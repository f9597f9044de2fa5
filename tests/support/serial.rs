//! One lock for the whole test binary: a test with tight timing assertions takes it
//! exclusively, every other test shares it. Tests of every module share one process on
//! a 2-core machine, so a 10 ms phase tolerance or a 250 ms token window would otherwise
//! be eaten by a neighbour's TLS handshakes, floods or child processes.
//!
//! Every test takes one guard as its first statement and holds it to its end (a test
//! may drop a shared guard early once it only waits and no longer loads the machine).

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static SERIAL: RwLock<()> = RwLock::const_new(());

/// For an async test that may run beside others.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().await
}

/// For an async test that needs the machine to itself.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().await
}

/// [`shared`] for a synchronous test (outside any runtime).
pub fn shared_blocking() -> RwLockReadGuard<'static, ()> {
    SERIAL.blocking_read()
}

/// [`exclusive`] for a synchronous test (outside any runtime).
pub fn exclusive_blocking() -> RwLockWriteGuard<'static, ()> {
    SERIAL.blocking_write()
}
