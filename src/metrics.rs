//! Prometheus metrics, all prefixed `gateway_`, with low-cardinality labels only (project and
//! model names come from the config; passthrough model strings are capped, see `model_label`).
//! Documented one by one in `docs/metrics.md`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Distinct passthrough model names (`provider/model` strings not in `[[models]]`) that get
/// their own label value; past this, they share `other`.
const MAX_PASSTHROUGH_MODEL_LABELS: usize = 200;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub tokens_total: IntCounterVec,
    pub inflight: IntGauge,
    pub upstream_requests: IntCounterVec,
    pub retries: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub cooldown: IntGaugeVec,
    pub cache_requests: IntCounterVec,
    /// Cost, budget and rate-limit metrics (`pipeline/budget.rs`).
    pub spend: crate::pipeline::budget::SpendMetrics,
    pub dlp_findings: IntCounterVec,
    pub dlp_blocked: IntCounterVec,
    pub injection_flagged: IntCounterVec,
    /// Gateway overhead, config identity and reloads, audit records.
    pub ops: OpsMetrics,
    passthrough_models: Mutex<HashSet<String>>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new("gateway_requests_total", "Requests answered, by outcome."),
            &["project", "model", "provider", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request received to response finished (streams: last byte).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint", "stream"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_duration_seconds",
                "Time from upstream request sent to upstream response finished.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let ttfb = HistogramVec::new(
            HistogramOpts::new(
                "gateway_time_to_first_byte_seconds",
                "Time from request received to the first body byte sent to the client.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["provider", "stream"],
        )?;
        let tokens_total = IntCounterVec::new(
            Opts::new("gateway_tokens_total", "Tokens reported by providers."),
            &["project", "model", "kind"],
        )?;
        let inflight = IntGauge::new("gateway_inflight_requests", "Requests being served now.")?;
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_requests_total",
                "Upstream attempts, by outcome class (ok, rate_limited, server_error, ...).",
            ),
            &["provider", "deployment", "class"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "gateway_retries_total",
                "Attempts after the first, by the class of the failure that caused them; \
                 reason=\"budget_exhausted\" counts retries refused by the retry budget.",
            ),
            &["reason"],
        )?;
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "gateway_fallbacks_total",
                "Attempts that moved from one model group to another.",
            ),
            &["from", "to"],
        )?;
        let cooldown = IntGaugeVec::new(
            Opts::new(
                "gateway_deployment_cooldown",
                "1 while a configured deployment is cooling down (skipped), else 0.",
            ),
            &["deployment"],
        )?;
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "gateway_cache_requests_total",
                "Chat requests of projects that use the response cache: hit, miss, or bypass \
                 (Cache-Control: no-cache / no-store).",
            ),
            &["result"],
        )?;
        let dlp_findings = IntCounterVec::new(
            Opts::new(
                "gateway_dlp_findings_total",
                "Data protection findings in requests and responses, by entity type and action.",
            ),
            &["project", "entity", "action"],
        )?;
        let dlp_blocked = IntCounterVec::new(
            Opts::new(
                "gateway_dlp_blocked_total",
                "Requests refused by a data protection policy: entity, injection, unscannable.",
            ),
            &["project", "reason"],
        )?;
        let injection_flagged = IntCounterVec::new(
            Opts::new(
                "gateway_injection_flagged_total",
                "Requests whose prompt-injection score reached the policy threshold.",
            ),
            &["project", "action"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "gateway_build_info",
                "Always 1; the version is in the label.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(ttfb.clone()))?;
        registry.register(Box::new(tokens_total.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(upstream_requests.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        registry.register(Box::new(cooldown.clone()))?;
        registry.register(Box::new(cache_requests.clone()))?;
        registry.register(Box::new(dlp_findings.clone()))?;
        registry.register(Box::new(dlp_blocked.clone()))?;
        registry.register(Box::new(injection_flagged.clone()))?;
        registry.register(Box::new(build_info))?;
        let spend = crate::pipeline::budget::SpendMetrics::register(&registry)?;
        let ops = OpsMetrics::register(&registry)?;
        Ok(Self {
            spend,
            ops,
            registry,
            requests_total,
            request_duration,
            upstream_duration,
            ttfb,
            tokens_total,
            inflight,
            upstream_requests,
            retries,
            fallbacks,
            cooldown,
            cache_requests,
            dlp_findings,
            dlp_blocked,
            injection_flagged,
            passthrough_models: Mutex::new(HashSet::new()),
        })
    }

    /// The label value for a passthrough model string: itself while fewer than the cap have
    /// been seen, `other` after, so a client cannot grow the series without bound.
    pub fn passthrough_model_label(&self, model: &str) -> String {
        let Ok(mut seen) = self.passthrough_models.lock() else {
            return "other".into();
        };
        if seen.contains(model) {
            return model.to_string();
        }
        if seen.len() < MAX_PASSTHROUGH_MODEL_LABELS {
            seen.insert(model.to_string());
            return model.to_string();
        }
        "other".into()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

pub struct OpsMetrics {
    pub overhead: HistogramVec,
    pub config_info: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub audit_records: IntCounterVec,
}

impl OpsMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "gateway_overhead_seconds",
                "Time a request spent in the gateway itself: its whole duration minus the time \
                 spent waiting on upstream attempts (backoff waits count as gateway time).",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["endpoint"],
        )?;
        let config_info = IntGaugeVec::new(
            Opts::new(
                "gateway_config_info",
                "Always 1; the hash of the config being served, and its data protection \
                 policies as name@version, are in the labels.",
            ),
            &["hash", "policies"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "gateway_config_reloads_total",
                "Config reloads by result: ok, or failed (the old config stays).",
            ),
            &["result"],
        )?;
        let audit_records = IntCounterVec::new(
            Opts::new(
                "gateway_audit_records_total",
                "Audit records by result: written, dropped (queue full) or error (sink failed).",
            ),
            &["result"],
        )?;
        for result in ["ok", "failed"] {
            config_reloads.with_label_values(&[result]);
        }
        for result in ["written", "dropped", "error"] {
            audit_records.with_label_values(&[result]);
        }
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(audit_records.clone()))?;
        Ok(Self {
            overhead,
            config_info,
            config_reloads,
            audit_records,
        })
    }

    /// Points `gateway_config_info` at the config now served.
    pub fn set_config(&self, rt: &crate::config::Runtime) {
        let policies: Vec<String> = rt
            .policies
            .values()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        self.config_info.reset();
        self.config_info
            .with_label_values(&[rt.ops.config_hash.as_ref(), &policies.join(",")])
            .set(1);
    }
}
