//! `gateway`: the command-line entry. Parses arguments, sets up logging, and hands off to
//! `gateway::cli` and `gateway::serve`. The only place `anyhow` is used.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gateway::cli::{self, AuditCommand, Cli, Command, LogFormat};
use gateway::config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Check {
            diff: Some(files), ..
        } => {
            let ok = cli::check_diff(&files[0], &files[1], &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check { config, .. } => {
            let ok = cli::check(&config::resolve_path(config), &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::HashKey { key } => {
            let ok = cli::hash_key(key, &mut out)?;
            if !ok {
                anyhow::bail!("no key given (pass it as an argument or on stdin)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::GenKey => {
            cli::gen_key(&mut out)?;
            let _ = writeln!(
                std::io::stderr(),
                "The first line is the key: hand it to the client. The second goes into [[projects]] keys."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { config } => {
            let ok = cli::doctor(&config::resolve_path(config), &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Budget { config } => {
            let ok = cli::budget(&config::resolve_path(config), &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Scan {
            config,
            policy,
            sensitivity,
            format,
            file,
        } => {
            let blocked = cli::scan(
                config.as_deref(),
                policy.as_deref(),
                sensitivity,
                format,
                file.as_deref(),
                &mut out,
            )
            .map_err(anyhow::Error::msg)?;
            Ok(if blocked {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Report {
            config,
            dir,
            since,
            until,
            by,
            project,
            format,
        } => {
            let args = cli::ReportArgs {
                config,
                dir,
                since,
                until,
                by,
                project,
                format,
            };
            let ok = cli::report(args, &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    dir,
                    key_env,
                },
        } => {
            let ok = cli::audit_verify(config, dir, key_env, &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve { config } => {
            drop(out);
            serve(&config::resolve_path(config))
        }
        Command::MockServer {
            listen,
            reply,
            chunk_chars,
            chunk_delay_ms,
            latency_ms,
        } => {
            drop(out);
            let settings = cli::mock_settings(reply, chunk_chars, chunk_delay_ms, latency_ms)
                .map_err(|e| anyhow::anyhow!(e.join("; ")))?;
            runtime()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                tracing::info!(addr = %listener.local_addr()?, "mock provider listening");
                gateway::providers::mock::serve_http(listener, settings, shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let rt = match cli::load_runtime(path) {
        Ok(rt) => rt,
        Err(problems) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{}: {} problem(s)", path.display(), problems.len())?;
            for p in problems {
                writeln!(err, "  - {p}")?;
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &rt.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    let (listen, admin_listen) = (rt.server.listen, rt.server.admin_listen);
    let state = gateway::AppState::new(rt).map_err(anyhow::Error::msg)?;
    let _ = state.config_path.set(path.to_path_buf());
    runtime()?.block_on(async move {
        let api = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding server.listen {listen}"))?;
        let admin = tokio::net::TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("binding server.admin_listen {admin_listen}"))?;
        tracing::info!(
            listen = %api.local_addr()?,
            admin = %admin.local_addr()?,
            version = env!("CARGO_PKG_VERSION"),
            config = %path.display(),
            "listening"
        );
        gateway::serve(api, admin, state.clone(), shutdown_signal()).await?;
        state.tasks.close();
        state.tasks.wait().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
