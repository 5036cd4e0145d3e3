//! Reading the worker's /metrics text: one way, which fails the test when a series is
//! missing, so that a renamed metric cannot pass a check for 0.

/// The value of one series (`name{labels}`, as the worker writes it) in /metrics text; a
/// series that is not there fails the test, so a renamed metric cannot pass a `== 0`.
pub fn metric(text: &str, series: &str) -> f64 {
    find_metric(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// [`metric`] for a series born at its first count (e.g. `api_calls_total` of one
/// `status`): 0 while it is absent. Its metric must be in the text all the same (its
/// `# TYPE` line, written once any of its series exists), so a renamed metric still fails
/// the test.
pub fn metric_or_zero(text: &str, series: &str) -> f64 {
    let name = series.split('{').next().unwrap_or(series);
    // A counter's samples end in `_total`, a histogram's in `_sum`, `_count`, `_bucket`.
    let mut families = ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .into_iter()
        .chain([name]);
    let served = families.any(|family| text.contains(&format!("\n# TYPE {family} ")));
    assert!(served, "no metric {name} in\n{text}");
    find_metric(text, series).unwrap_or(0.0)
}

/// The value of `series` if the text has it (for polling; a test asserts with [`metric`]).
pub(super) fn find_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
