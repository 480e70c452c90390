//! The benchmark's table: printed, and written as JSON.

use std::path::PathBuf;

use super::load::Stats;
use super::BoxResult;

/// One figure and its ratios to the limits it is compared with.
pub(crate) struct Row {
    section: &'static str,
    name: String,
    stats: Stats,
    ratios: Vec<(&'static str, f64)>,
    /// Other measured quantities, e.g. (12.5, "µs daemon CPU per call").
    figures: Vec<(&'static str, f64)>,
}

impl Row {
    pub(crate) fn new(section: &'static str, name: impl Into<String>, stats: Stats) -> Self {
        Self {
            section,
            name: name.into(),
            stats,
            ratios: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Adds "`value` `what`", e.g. 41.0 "µs daemon CPU per call".
    pub(crate) fn figure(mut self, what: &'static str, value: f64) -> Self {
        if value.is_finite() {
            self.figures.push((what, value));
        }
        self
    }

    /// Adds "`value` `what`", e.g. 0.7 "of echo".
    pub(crate) fn ratio(mut self, what: &'static str, value: f64) -> Self {
        self.ratios.push((what, value));
        self
    }
}

/// Every row of one run, in order.
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub(crate) fn push(&mut self, row: Row) {
        // Shown as it comes, so a long run shows progress.
        eprintln!("  {:<64} {:>10.0}/s", row.name, row.stats.rate);
        self.rows.push(row);
    }

    pub(crate) fn print(&self) {
        let mut section = "";
        for r in &self.rows {
            if r.section != section {
                section = r.section;
                println!(
                    "\n{:<64} {:>10} {:>9} {:>9}  ratios",
                    format!("[{section}]"),
                    "calls/s",
                    "p50 µs",
                    "p99 µs"
                );
            }
            let lat = |v: f64| {
                if v > 0.0 {
                    format!("{v:>9.0}")
                } else {
                    format!("{:>9}", "")
                }
            };
            let ratios: Vec<String> = r
                .ratios
                .iter()
                .map(|(what, v)| format!("{:.0}% {what}", 100.0 * v))
                .chain(r.figures.iter().map(|(what, v)| format!("{v:.1} {what}")))
                .collect();
            println!(
                "{:<64} {:>10.0} {} {}  {}",
                r.name,
                r.stats.rate,
                lat(r.stats.p50_us),
                lat(r.stats.p99_us),
                ratios.join(", ")
            );
        }
    }

    /// Writes the rows to BENCH_JSON, else target/bench/throughput.json.
    pub(crate) fn write_json(&self) -> BoxResult<()> {
        let path = std::env::var_os("BENCH_JSON").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/throughput.json"),
            PathBuf::from,
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let ratios: serde_json::Map<String, serde_json::Value> = r
                    .ratios
                    .iter()
                    .map(|(what, v)| ((*what).to_owned(), (*v).into()))
                    .collect();
                let figures: serde_json::Map<String, serde_json::Value> = r
                    .figures
                    .iter()
                    .map(|(what, v)| ((*what).to_owned(), (*v).into()))
                    .collect();
                serde_json::json!({
                    "section": r.section,
                    "name": r.name,
                    "calls_per_second": r.stats.rate,
                    "p50_us": r.stats.p50_us,
                    "p99_us": r.stats.p99_us,
                    "ratios": ratios,
                    "figures": figures,
                })
            })
            .collect();
        std::fs::write(&path, serde_json::to_vec_pretty(&rows)?)?;
        println!("\nwritten to {}", path.display());
        Ok(())
    }
}
