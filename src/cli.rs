//! The `gateway` subcommands: `serve`, `check`, `doctor`, `budget`, `scan`, `report`, `audit`,
//! `hash-key`, `gen-key`,
//! `mock-server`.
//! Output meant for the operator goes to stdout; logs go to stderr.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, validate::hex, MockConfig, Runtime};

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "A self-hostable LLM gateway: one binary, one TOML file, no database."
)]
pub struct Cli {
    /// Log line format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GATEWAY_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file [default: ./gateway.toml]
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the config and print a summary; exit 1 listing every problem.
    Check {
        /// Config file [default: ./gateway.toml]
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Print what changing OLD into NEW does (models, keys, limits, policies) and
        /// validate NEW; exit 1 if NEW is invalid.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with = "config")]
        diff: Option<Vec<PathBuf>>,
    },
    /// Check every provider: name resolution, connection (through the egress proxy), TLS and
    /// the key; prints a table with advice and exits 1 if any provider fails.
    Doctor {
        /// Config file [default: ./gateway.toml]
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print each project's (and key's) spend, limit, remaining and reset time from the state
    /// directory; safe while the server runs.
    Budget {
        /// Config file [default: ./gateway.toml]
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the hashed form of a virtual key, to paste into `[[projects]] keys`.
    HashKey {
        /// The key; read from stdin when absent.
        key: Option<String>,
    },
    /// Mint a new random virtual key; prints the key, then its hash.
    GenKey,
    /// Run a data protection policy over text (or JSONL with a `text` field) and print the
    /// findings and the redacted text. Exits 2 if anything would be blocked.
    Scan {
        /// Config file holding `[policies.NAME]`; without it a built-in policy that detects
        /// every type is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The policy to use (needed when the config has several).
        #[arg(long)]
        policy: Option<String>,
        /// Override the policy's sensitivity.
        #[arg(long, value_enum)]
        sensitivity: Option<ScanSensitivity>,
        #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
        format: ScanFormat,
        /// Input file, or `-` (the default) for stdin.
        file: Option<PathBuf>,
    },
    /// Requests, errors, tokens, cost, cache savings, p50/p95 latency and data-protection
    /// findings from the audit files, grouped.
    Report {
        /// Config file whose `audit.dir` holds the files.
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Audit directory (overrides the config's `audit.dir`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// First day included (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Last day included (YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = crate::report::By::Project)]
        by: crate::report::By,
        /// Only this project's requests.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, value_enum, default_value_t = crate::report::Format::Table)]
        format: crate::report::Format,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve the built-in mock provider as an OpenAI-shaped HTTP upstream (for demos, CI and
    /// benchmarks).
    MockServer {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// Fixed reply (default: echo the last user message).
        #[arg(long)]
        reply: Option<String>,
        #[arg(long, default_value_t = 12)]
        chunk_chars: usize,
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    Text,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanSensitivity {
    Low,
    Medium,
    High,
}

/// `gateway scan`: Ok(true) when anything would be blocked.
pub fn scan(
    config: Option<&Path>,
    policy: Option<&str>,
    sensitivity: Option<ScanSensitivity>,
    format: ScanFormat,
    file: Option<&Path>,
    out: &mut impl Write,
) -> Result<bool, String> {
    use crate::dlp::Sensitivity;
    let p = crate::dlp::cli::load_policy(config, policy)?;
    let sens = sensitivity.map(|s| match s {
        ScanSensitivity::Low => Sensitivity::Low,
        ScanSensitivity::Medium => Sensitivity::Medium,
        ScanSensitivity::High => Sensitivity::High,
    });
    let jsonl = format == ScanFormat::Jsonl;
    match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => {
            let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
            crate::dlp::cli::run(&p, sens, jsonl, &mut std::io::BufReader::new(file), out)
        }
        None => crate::dlp::cli::run(&p, sens, jsonl, &mut std::io::stdin().lock(), out),
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the HMAC hash chain of the audit files; exit 1 if a record was edited, deleted
    /// or inserted.
    Verify {
        /// Config file whose `[audit]` names the directory and the key variable.
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Audit directory (overrides the config's `audit.dir`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Environment variable holding the chain key (overrides `audit.hmac_key_env`).
        #[arg(long)]
        key_env: Option<String>,
    },
}

/// Loads and validates a config file against the process environment.
pub fn load_runtime(path: &Path) -> Result<Runtime, Vec<String>> {
    let cfg = config::load(path)?;
    let mut rt = Runtime::build(&cfg, &|name| std::env::var(name).ok())?;
    if let Ok(tree) = config::effective(path) {
        rt.ops.config_hash = config::hash_of(&tree).into();
        rt.ops.tree = Some(Arc::new(tree));
    }
    Ok(rt)
}

pub fn check(path: &Path, out: &mut impl Write) -> std::io::Result<bool> {
    match load_runtime(path) {
        Ok(rt) => {
            let names = |v: Vec<&str>| v.join(", ");
            writeln!(out, "{}: OK", path.display())?;
            writeln!(
                out,
                "  providers: {} ({})",
                rt.providers.len(),
                names(rt.providers.iter().map(|p| p.name.as_str()).collect())
            )?;
            writeln!(
                out,
                "  models:    {} ({})",
                rt.models.len(),
                names(rt.models.iter().map(|m| m.name.as_str()).collect())
            )?;
            writeln!(
                out,
                "  projects:  {} ({}), {} virtual keys",
                rt.projects.len(),
                names(rt.projects.iter().map(|p| p.name.as_str()).collect()),
                rt.key_count()
            )?;
            writeln!(
                out,
                "  listen:    {} (admin {})",
                rt.server.listen, rt.server.admin_listen
            )?;
            writeln!(out, "  hash:      {}", rt.ops.config_hash)?;
            for w in &rt.warnings {
                writeln!(out, "  warning: {w}")?;
            }
            Ok(true)
        }
        Err(problems) => {
            writeln!(out, "{}: {} problem(s)", path.display(), problems.len())?;
            for p in problems {
                writeln!(out, "  - {p}")?;
            }
            Ok(false)
        }
    }
}

/// `gateway doctor`: the config validated as `serve` would, then every provider checked.
pub fn doctor(path: &Path, out: &mut impl Write) -> std::io::Result<bool> {
    let rt = match load_runtime(path) {
        Ok(rt) => rt,
        Err(problems) => {
            writeln!(out, "{}: {} problem(s)", path.display(), problems.len())?;
            for p in problems {
                writeln!(out, "  - {p}")?;
            }
            return Ok(false);
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(crate::doctor::run(&rt, out))
}

/// `gateway check --diff OLD NEW`.
pub fn check_diff(old: &Path, new: &Path, out: &mut impl Write) -> std::io::Result<bool> {
    let tree = |p: &Path| config::effective(p).map_err(|e| e.join("; "));
    let (a, b) = match (tree(old), tree(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            writeln!(out, "cannot read: {e}")?;
            return Ok(false);
        }
    };
    writeln!(
        out,
        "{} ({}) -> {} ({})",
        old.display(),
        config::hash_of(&a),
        new.display(),
        config::hash_of(&b)
    )?;
    let changes = config::diff::diff(&a, &b);
    if changes.is_empty() {
        writeln!(out, "  no changes")?;
    }
    for c in &changes {
        writeln!(out, "  {c}")?;
    }
    match load_runtime(new) {
        Ok(rt) => {
            writeln!(out, "{}: valid", new.display())?;
            for w in &rt.warnings {
                writeln!(out, "  warning: {w}")?;
            }
            Ok(true)
        }
        Err(problems) => {
            writeln!(out, "{}: {} problem(s)", new.display(), problems.len())?;
            for p in problems {
                writeln!(out, "  - {p}")?;
            }
            Ok(false)
        }
    }
}

/// `sha256:<hex>` of a key, as the config stores it.
pub fn hashed(key: &str) -> String {
    format!("sha256:{}", hex(&config::hash_key(key)))
}

pub fn hash_key(key: Option<String>, out: &mut impl Write) -> std::io::Result<bool> {
    let key = match key {
        Some(k) => k,
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let key = key.trim();
    if key.is_empty() {
        return Ok(false);
    }
    writeln!(out, "{}", hashed(key))?;
    Ok(true)
}

pub fn gen_key(out: &mut impl Write) -> std::io::Result<()> {
    let key = format!("sk-gw-{}", hex(&rand::random::<[u8; 24]>()));
    writeln!(out, "{key}")?;
    writeln!(out, "{}", hashed(&key))
}

pub fn mock_settings(
    reply: Option<String>,
    chunk_chars: usize,
    chunk_delay_ms: u64,
    latency_ms: u64,
) -> Result<Arc<config::MockSettings>, Vec<String>> {
    let cfg = MockConfig {
        reply,
        chunk_chars,
        chunk_delay_ms,
        latency_ms,
        ..MockConfig::default()
    };
    let mut errs = Vec::new();
    let s = config::validate::mock_settings(&cfg, "mock", &mut errs);
    if errs.is_empty() {
        Ok(Arc::new(s))
    } else {
        Err(errs)
    }
}

/// `gateway budget`: the spend report from the state directory (read-only).
pub fn budget(path: &Path, out: &mut impl Write) -> std::io::Result<bool> {
    // Only projects, budgets and the state directory matter here: provider keys need not be
    // in this shell's environment.
    let rt = match config::load(path)
        .and_then(|c| Runtime::build(&c, &|_| Some("unused-here-0123456789".into())))
    {
        Ok(rt) => rt,
        Err(problems) => {
            writeln!(out, "{}: {} problem(s)", path.display(), problems.len())?;
            for p in problems {
                writeln!(out, "  - {p}")?;
            }
            return Ok(false);
        }
    };
    crate::pipeline::budget::print_report(&rt, out)
}

/// `gateway audit verify`: walks the hash chain of every audit file.
pub fn audit_verify(
    config_path: Option<PathBuf>,
    dir: Option<PathBuf>,
    key_env: Option<String>,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let cfg = match (&dir, &key_env) {
        (Some(_), Some(_)) => None,
        _ => match config::load(&config::resolve_path(config_path)) {
            Ok(c) => Some(c),
            Err(problems) => {
                writeln!(out, "config: {}", problems.join("; "))?;
                return Ok(false);
            }
        },
    };
    let audit = cfg.map(|c| c.audit);
    let Some(dir) = dir.or_else(|| audit.as_ref().and_then(|a| a.dir.clone())) else {
        writeln!(out, "no audit directory: pass --dir or set audit.dir")?;
        return Ok(false);
    };
    let Some(var) = key_env.or_else(|| audit.and_then(|a| a.hmac_key_env)) else {
        writeln!(
            out,
            "no chain key: pass --key-env or set audit.hmac_key_env"
        )?;
        return Ok(false);
    };
    let Some(key) = std::env::var(&var).ok().map(|k| k.trim().to_string()) else {
        writeln!(out, "environment variable {var:?} is not set")?;
        return Ok(false);
    };
    let v = crate::audit::verify(&dir, key.as_bytes())?;
    for n in &v.notes {
        writeln!(out, "note: {n}")?;
    }
    for p in &v.problems {
        writeln!(out, "TAMPERED: {p}")?;
    }
    writeln!(
        out,
        "{}: {} record(s) in {} file(s), {}",
        dir.display(),
        v.records,
        v.files,
        if v.problems.is_empty() {
            "chain intact".to_string()
        } else {
            format!("{} problem(s)", v.problems.len())
        }
    )?;
    Ok(v.problems.is_empty())
}

/// What `gateway report` was asked.
pub struct ReportArgs {
    pub config: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub by: crate::report::By,
    pub project: Option<String>,
    pub format: crate::report::Format,
}

/// `gateway report`: aggregates over the audit files.
pub fn report(args: ReportArgs, out: &mut impl Write) -> std::io::Result<bool> {
    let dir = match args.dir {
        Some(d) => d,
        None => match config::load(&config::resolve_path(args.config)) {
            Ok(c) => match c.audit.dir {
                Some(d) => d,
                None => {
                    writeln!(out, "no audit directory: pass --dir or set audit.dir")?;
                    return Ok(false);
                }
            },
            Err(problems) => {
                writeln!(out, "config: {}", problems.join("; "))?;
                return Ok(false);
            }
        },
    };
    let day = |s: Option<String>, name: &str| match s {
        None => Ok(None),
        Some(s) => crate::audit::parse_date(&s)
            .map(Some)
            .ok_or(format!("--{name}: {s:?} is not a date like 2025-09-01")),
    };
    let (since, until) = match (day(args.since, "since"), day(args.until, "until")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            writeln!(out, "{e}")?;
            return Ok(false);
        }
    };
    let q = crate::report::Query {
        since,
        until,
        by: args.by,
        project: args.project,
    };
    let report = crate::report::build(&dir, &q)?;
    crate::report::write(&report, args.format, out)?;
    Ok(true)
}
