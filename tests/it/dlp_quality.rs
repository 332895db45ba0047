//! The quality bar: scores the built-in default policy on the labelled corpus in `tests/data`
//! (per-type precision and recall; a prediction counts when its type matches a labelled span
//! it overlaps) and the injection guard on its evaluation set (precision, recall, false-positive
//! rate). `DLP_CORPUS=path.jsonl` scores another corpus of the same shape. Run with
//! `cargo test --test it dlp_quality -- --nocapture` to see the tables.

use std::collections::BTreeMap;

use gateway::dlp::{injection, Policy, Sensitivity};
use serde_json::Value;

const CONTEXT_TYPES: &[&str] = &["PERSON", "STREET_ADDRESS", "DATE_OF_BIRTH"];

fn lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Counts {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            f64::from(self.tp) / f64::from(self.tp + self.fp)
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            f64::from(self.tp) / f64::from(self.tp + self.fn_)
        }
    }
}

#[test]
fn dlp_quality_meets_targets() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = std::env::var("DLP_CORPUS")
        .unwrap_or_else(|_| format!("{root}/tests/data/dlp_corpus.jsonl"));
    let p = Policy::builtin_default().unwrap();
    let mut per: BTreeMap<String, Counts> = BTreeMap::new();
    for rec in lines(&path) {
        let text = rec["text"].as_str().unwrap();
        let gold: Vec<(String, usize, usize)> = rec["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["start"].as_u64().unwrap() as usize,
                    e["end"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let pred: Vec<(String, usize, usize)> = p
            .findings(text, Sensitivity::Medium)
            .iter()
            .map(|f| (p.kind_name(f.kind).to_string(), f.start, f.end))
            .collect();
        let mut matched = vec![false; gold.len()];
        for (t, s, e) in &pred {
            let hit = gold
                .iter()
                .enumerate()
                .find(|(i, (gt, gs, ge))| !matched[*i] && gt == t && s < ge && gs < e);
            match hit {
                Some((i, _)) => {
                    matched[i] = true;
                    per.entry(t.clone()).or_default().tp += 1;
                }
                None => {
                    per.entry(t.clone()).or_default().fp += 1;
                    if std::env::var("DLP_VERBOSE").is_ok() {
                        println!("FP {t} {:?} in {:?}", &text[*s..*e], rec["id"]);
                    }
                }
            }
        }
        for (i, (t, s, e)) in gold.iter().enumerate() {
            if !matched[i] {
                per.entry(t.clone()).or_default().fn_ += 1;
                if std::env::var("DLP_VERBOSE").is_ok() {
                    println!("FN {t} {:?} in {:?}", &text[*s..*e], rec["id"]);
                }
            }
        }
    }
    let mut total = Counts::default();
    let mut failures = Vec::new();
    println!(
        "{:<24} {:>5} {:>5} {:>5} {:>9} {:>7}",
        "type", "tp", "fp", "fn", "precision", "recall"
    );
    for (t, c) in &per {
        total.tp += c.tp;
        total.fp += c.fp;
        total.fn_ += c.fn_;
        println!(
            "{t:<24} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}",
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
        let bar = if CONTEXT_TYPES.contains(&t.as_str()) {
            0.85
        } else {
            0.95
        };
        if c.precision() < bar || c.recall() < bar {
            failures.push(format!(
                "{t}: precision {:.3} recall {:.3} (target {bar})",
                c.precision(),
                c.recall()
            ));
        }
    }
    println!(
        "{:<24} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}",
        "ALL",
        total.tp,
        total.fp,
        total.fn_,
        total.precision(),
        total.recall()
    );
    assert!(
        total.recall() >= 0.95,
        "overall recall {:.3}",
        total.recall()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn dlp_quality_injection_eval() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut c = Counts::default();
    let mut tn = 0u32;
    let threshold = injection::default_threshold(Sensitivity::Medium);
    for rec in lines(&format!("{root}/tests/data/injection_eval.jsonl")) {
        let text = rec["text"].as_str().unwrap();
        let flagged = injection::score(text) >= threshold;
        match (rec["injection"].as_bool().unwrap(), flagged) {
            (true, true) => c.tp += 1,
            (true, false) => {
                c.fn_ += 1;
                println!("missed injection: {text}");
            }
            (false, true) => {
                c.fp += 1;
                println!("false alarm: {text}");
            }
            (false, false) => tn += 1,
        }
    }
    let fpr = f64::from(c.fp) / f64::from(c.fp + tn);
    println!(
        "injection: precision {:.3} recall {:.3} FPR {:.3} (tp {} fp {} fn {} tn {tn})",
        c.precision(),
        c.recall(),
        fpr,
        c.tp,
        c.fp,
        c.fn_
    );
    assert!(
        c.precision() >= 0.9 && c.recall() >= 0.85 && fpr <= 0.05,
        "precision {:.3} recall {:.3} fpr {fpr:.3}",
        c.precision(),
        c.recall()
    );
}
