//! Reports over the audit files: requests, errors, tokens, cost, cache savings, p50/p95
//! latency and data-protection findings, grouped by project, model, provider, day or key, for
//! a range of days. Used by `gateway report` (table, CSV or JSON) and `GET /admin/report`
//! (JSON); both read the same files, so they agree.
//!
//! Latency percentiles are exact (nearest rank): the latencies of each group are held while
//! the report is built, 8 bytes per record in range.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audit::{self, parse_date};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Project,
    Model,
    Provider,
    Day,
    Key,
}

impl By {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "project" => Self::Project,
            "model" => Self::Model,
            "provider" => Self::Provider,
            "day" => Self::Day,
            "key" => Self::Key,
            _ => return None,
        })
    }
}

/// Which records, grouped how.
#[derive(Debug, Clone)]
pub struct Query {
    /// First and last day included (days since 1970-01-01, UTC); None: unbounded.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub by: By,
    /// Only this project's records.
    pub project: Option<String>,
}

impl Query {
    /// A query from `since=YYYY-MM-DD&until=...&by=...&project=...`.
    pub fn from_params(query: Option<&str>) -> Result<Self, String> {
        let mut q = Self {
            since: None,
            until: None,
            by: By::Project,
            project: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "since" => {
                    q.since = Some(
                        parse_date(v)
                            .ok_or(format!("since: {v:?} is not a date like 2025-09-01"))?,
                    )
                }
                "until" => {
                    q.until = Some(
                        parse_date(v)
                            .ok_or(format!("until: {v:?} is not a date like 2025-09-01"))?,
                    )
                }
                "by" => {
                    q.by = By::parse(v).ok_or(format!(
                        "by: {v:?} is not one of project, model, provider, day, key"
                    ))?
                }
                "project" if !v.is_empty() => q.project = Some(v.to_string()),
                "project" => {}
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(q)
    }
}

/// One audit line, as far as reports need it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Line {
    ts: String,
    project: Option<String>,
    key_id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    status: u16,
    latency_ms: f64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    cost_usd: Option<f64>,
    cache: Option<String>,
    cache_saved_usd: Option<f64>,
    dlp: Option<BTreeMap<String, u64>>,
}

/// The aggregates of one group (or of everything, as the total).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub key: String,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
    pub cache_hits: u64,
    pub cache_saved_usd: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Data-protection findings per entity type.
    pub dlp: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Acc {
    row: Row,
    cost_nanos: u64,
    saved_nanos: u64,
    latencies: Vec<f64>,
}

impl Acc {
    fn add(&mut self, l: &Line) {
        let r = &mut self.row;
        r.requests += 1;
        r.errors += u64::from(l.status >= 400);
        r.prompt_tokens += l.prompt_tokens;
        r.completion_tokens += l.completion_tokens;
        r.cached_tokens += l.cached_tokens;
        r.cache_hits += u64::from(l.cache.as_deref() == Some("hit"));
        // Summed in nano-dollars, as the ledger counts, so totals do not drift.
        self.cost_nanos += nanos(l.cost_usd);
        self.saved_nanos += nanos(l.cache_saved_usd);
        for (entity, n) in l.dlp.iter().flatten() {
            *r.dlp.entry(entity.clone()).or_default() += n;
        }
        self.latencies.push(l.latency_ms);
    }

    fn finish(mut self) -> Row {
        self.latencies.sort_by(f64::total_cmp);
        self.row.p50_ms = percentile(&self.latencies, 0.50);
        self.row.p95_ms = percentile(&self.latencies, 0.95);
        self.row.cost_usd = self.cost_nanos as f64 / 1e9;
        self.row.cache_saved_usd = self.saved_nanos as f64 / 1e9;
        self.row
    }
}

fn nanos(usd: Option<f64>) -> u64 {
    usd.filter(|u| u.is_finite() && *u > 0.0)
        .map_or(0, |u| (u * 1e9).round() as u64)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub since: Option<String>,
    pub until: Option<String>,
    pub by: By,
    pub project: Option<String>,
    pub rows: Vec<Row>,
    pub total: Row,
    pub files: usize,
    /// Lines that were not audit records (damaged or foreign), skipped.
    pub skipped: u64,
}

/// Builds the report from the audit files under `dir`.
pub fn build(dir: &Path, q: &Query) -> std::io::Result<Report> {
    let mut groups: HashMap<String, Acc> = HashMap::new();
    let mut total = Acc::default();
    let mut files = 0;
    let mut skipped = 0;
    let in_range = |day: i64| q.since.is_none_or(|s| day >= s) && q.until.is_none_or(|u| day <= u);
    for f in audit::list_files(dir)? {
        // A file holds the records of its day (by their timestamp).
        if !in_range(f.day) {
            continue;
        }
        files += 1;
        let reader = BufReader::new(std::fs::File::open(&f.path)?);
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let Ok(l) = serde_json::from_str::<Line>(&line) else {
                skipped += 1;
                continue;
            };
            let Some(day) = l.ts.get(..10).and_then(parse_date) else {
                skipped += 1;
                continue;
            };
            if !in_range(day) {
                continue;
            }
            if q.project.is_some() && l.project != q.project {
                continue;
            }
            let dash = || "-".to_string();
            let key = match q.by {
                By::Project => l.project.clone().unwrap_or_else(dash),
                By::Model => l.model.clone().unwrap_or_else(dash),
                By::Provider => l.provider.clone().unwrap_or_else(dash),
                By::Key => l.key_id.clone().unwrap_or_else(dash),
                By::Day => l.ts[..10].to_string(),
            };
            groups.entry(key).or_default().add(&l);
            total.add(&l);
        }
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, acc)| {
            let mut row = acc.finish();
            row.key = key;
            row
        })
        .collect();
    if q.by == By::Day {
        rows.sort_by(|a, b| a.key.cmp(&b.key));
    } else {
        rows.sort_by(|a, b| {
            b.cost_usd
                .total_cmp(&a.cost_usd)
                .then(b.requests.cmp(&a.requests))
                .then(a.key.cmp(&b.key))
        });
    }
    let mut total = total.finish();
    total.key = "TOTAL".into();
    let date = |d: i64| audit::file_name(d, 0)[6..16].to_string();
    Ok(Report {
        since: q.since.map(date),
        until: q.until.map(date),
        by: q.by,
        project: q.project.clone(),
        rows,
        total,
        files,
        skipped,
    })
}

/// The report of no records (no audit file written yet).
pub fn build_empty() -> Report {
    Report {
        since: None,
        until: None,
        by: By::Project,
        project: None,
        rows: Vec::new(),
        total: Row {
            key: "TOTAL".into(),
            ..Row::default()
        },
        files: 0,
        skipped: 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

const COLUMNS: [&str; 11] = [
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "cache_hits",
    "cache_saved_usd",
    "p50_ms",
    "p95_ms",
    "dlp",
];

fn cells(r: &Row) -> Vec<String> {
    let dlp = if r.dlp.is_empty() {
        "-".to_string()
    } else {
        r.dlp
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        r.key.clone(),
        r.requests.to_string(),
        r.errors.to_string(),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.cached_tokens.to_string(),
        format!("{:.6}", r.cost_usd),
        r.cache_hits.to_string(),
        format!("{:.6}", r.cache_saved_usd),
        format!("{:.1}", r.p50_ms),
        format!("{:.1}", r.p95_ms),
        dlp,
    ]
}

/// Writes the report in `format`.
pub fn write(report: &Report, format: Format, out: &mut impl Write) -> std::io::Result<()> {
    let by = format!("{:?}", report.by).to_ascii_lowercase();
    let mut header = vec![by];
    header.extend(COLUMNS.iter().map(|c| c.to_string()));
    let mut rows: Vec<Vec<String>> = report.rows.iter().map(cells).collect();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Csv => {
            writeln!(out, "{}", header.join(","))?;
            rows.push(cells(&report.total));
            for r in rows {
                let quoted: Vec<String> = r.iter().map(|c| csv_cell(c)).collect();
                writeln!(out, "{}", quoted.join(","))?;
            }
            Ok(())
        }
        Format::Table => {
            rows.insert(0, header);
            rows.push(cells(&report.total));
            let widths: Vec<usize> = (0..rows[0].len())
                .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                .collect();
            for r in &rows {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| {
                        if i == 0 || i == r.len() - 1 {
                            format!("{c:<w$}")
                        } else {
                            format!("{c:>w$}")
                        }
                    })
                    .collect();
                writeln!(out, "{}", line.join("  ").trim_end())?;
            }
            if report.skipped > 0 {
                writeln!(out, "({} damaged line(s) skipped)", report.skipped)?;
            }
            Ok(())
        }
    }
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn query_parameters() {
        let q = Query::from_params(Some("since=2025-09-01&by=model&project=alpha")).unwrap();
        assert_eq!(q.by, By::Model);
        assert_eq!(q.project.as_deref(), Some("alpha"));
        assert!(Query::from_params(Some("by=nope")).is_err());
        assert!(Query::from_params(Some("since=yesterday")).is_err());
    }
}
