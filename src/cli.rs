//! The `gateway` subcommands: `serve`, `check`, `doctor`, `budget`, `scan`, `hash-key`, `gen-key`,
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

/// Loads and validates a config file against the process environment.
pub fn load_runtime(path: &Path) -> Result<Runtime, Vec<String>> {
    let cfg = config::load(path)?;
    Runtime::build(&cfg, &|name| std::env::var(name).ok())
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
