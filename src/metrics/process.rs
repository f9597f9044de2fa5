//! The exporter's own series: `build_info`, and whether the last config (re)load worked.

use prometheus::{Gauge, IntGauge, IntGaugeVec, Registry};

use super::{register, scalar};
use crate::util::unix;

pub(super) struct ProcessMetrics {
    config_last_reload_successful: IntGauge,
    config_last_reload_success_timestamp_seconds: Gauge,
}

impl ProcessMetrics {
    pub(super) fn new(r: &Registry) -> ProcessMetrics {
        let build_info: IntGaugeVec = register(
            r,
            "build_info",
            "Build information; always 1.",
            &["version", "revision"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("SMTP_CANARY_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        ProcessMetrics {
            config_last_reload_successful: scalar(
                r,
                "config_last_reload_successful",
                "1 if the last config (re)load succeeded.",
            ),
            config_last_reload_success_timestamp_seconds: scalar(
                r,
                "config_last_reload_success_timestamp_seconds",
                "When the config was last loaded successfully (Unix seconds).",
            ),
        }
    }

    pub(super) fn config_loaded(&self, ok: bool) {
        self.config_last_reload_successful.set(i64::from(ok));
        if ok {
            let now = unix(std::time::SystemTime::now()) as f64;
            self.config_last_reload_success_timestamp_seconds.set(now);
        }
    }
}
