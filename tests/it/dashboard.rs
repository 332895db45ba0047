//! The admin dashboard page in headless Chromium: it loads, renders the projects of a seeded
//! audit log, and logs no console errors. Needs a Chromium binary (the Debian `chromium`
//! package, or `CHROMIUM=/path/to/chrome`).

use std::path::PathBuf;
use std::process::Command;

use crate::report::{seed, ADMIN_TOKEN};
use crate::support::*;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no Chromium found for the dashboard test: install the Debian package \
         (apt-get install chromium) or set CHROMIUM to a Chrome/Chromium binary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_the_seeded_projects_without_console_errors() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    seed(&audit);
    let cfg = mock_config("admin_token_env = \"ADMIN\"", "")
        + "budget = { usd = 50.0 }\n[pricing.\"mock/gpt-4o-mini\"]\ninput = 1.0\noutput = 1.0\n"
        + &format!("\n[audit]\ndir = \"{}\"\n", audit.display());
    let gw = spawn_gateway_env(&cfg, &[("ADMIN", ADMIN_TOKEN)]).await;

    // The page and its security headers, without a token.
    let page = get(&gw.admin_url("/admin/"), None).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    assert!(!page.text().contains("http://") || !page.text().contains("<script src"));

    let url = gw.admin_url(&format!("/admin/#token={ADMIN_TOKEN}"));
    let profile = dir.path().join("profile");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=10000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{log}");
    assert!(
        dom.contains("data-state=\"loaded\""),
        "not loaded:\n{dom}\n{log}"
    );
    assert!(dom.contains("data-errors=\"0\""), "page errors:\n{dom}");
    // Projects from the audit log, with the budget of the one that has one.
    for text in [
        "<td>alpha</td>",
        "<td>beta</td>",
        "$50.00",
        "gpt-4o-mini",
        "email",
        "mock/gpt-4o-mini",
        "healthy",
    ] {
        assert!(dom.contains(text), "missing {text} in\n{dom}");
    }
    assert!(
        dom.contains("data-series=\"requests\""),
        "no day chart:\n{dom}"
    );
    // The page writes nothing to the console: any console line (console.error, an uncaught
    // exception, a CSP violation) is Chromium's `CONSOLE` log entry.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console output:\n{}",
        console.join("\n")
    );
    assert!(
        !log.contains("Content Security Policy"),
        "CSP violation:\n{log}"
    );
    assert!(!log.contains("Uncaught"), "{log}");
}
