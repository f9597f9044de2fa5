//! Reading the Prometheus text exposition that `/metrics` (and `Metrics::render`) returns.

/// The value of the series written exactly as `series` (name and labels).
pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The first line that starts with `prefix`.
pub fn metric_line(body: &str, prefix: &str) -> Option<String> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}
