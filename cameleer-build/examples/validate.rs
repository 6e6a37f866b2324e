//! Validates JAR files and prints one JSON object per file per line.
//!
//! ```text
//! cargo run -p cameleer-build --example validate -- [--sha256 HEX] [--java-release N] [--sequential] FILE...
//! ```
//!
//! `--sequential` keeps the scan on one core (no nested-JAR worker thread).
//!
//! Exit status: 0 when every file is valid, 1 when any is rejected, 2 on a
//! usage error.

use std::io::Write;

use cameleer_build::{Sha256Digest, ValidationPolicy, validate_jar};
use serde_json::json;

const USAGE: &str = "usage: validate [--sha256 HEX] [--java-release N] [--sequential] FILE...";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = run(&args, &mut std::io::stdout().lock(), &mut std::io::stderr());
    std::process::exit(code);
}

/// Runs the tool: writes a line per file to `out`, problems with the
/// command line to `err`, and returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut policy = ValidationPolicy::default();
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sha256" => match it.next().map(|v| v.parse::<Sha256Digest>()) {
                Some(Ok(d)) => policy.expected_sha256 = Some(d),
                _ => return usage(err, "--sha256 needs 64 hex characters"),
            },
            "--java-release" => match it.next().map(|v| v.parse::<u16>()) {
                Some(Ok(r)) => policy.java_release = r,
                _ => return usage(err, "--java-release needs a number"),
            },
            "--sequential" => policy.parallel = false,
            "--" => files.extend(it.by_ref().cloned()),
            flag if flag.starts_with("--") => return usage(err, &format!("unknown option {flag}")),
            file => files.push(file.to_owned()),
        }
    }
    if files.is_empty() {
        return usage(err, "no FILE given");
    }
    let mut all_valid = true;
    for path in &files {
        let result = std::fs::File::open(path)
            .map_err(cameleer_build::ValidationError::Io)
            .and_then(|f| validate_jar(f, &policy));
        let line = match &result {
            Ok(v) => json!({
                "path": path, "valid": true, "sha256": v.sha256, "size": v.size,
                "main_class": v.main_class, "runtime": v.runtime,
                "max_class_version": v.max_class_version, "error": null, "findings": v.findings,
            }),
            Err(e) => json!({
                "path": path, "valid": false, "sha256": null, "size": null,
                "main_class": null, "runtime": null, "max_class_version": null,
                "error": { "code": e.code(), "message": e.to_string() }, "findings": [],
            }),
        };
        all_valid &= result.is_ok();
        if writeln!(out, "{line}").is_err() {
            return 1;
        }
    }
    if all_valid { 0 } else { 1 }
}

fn usage(err: &mut dyn Write, problem: &str) -> i32 {
    // Nothing useful is left to do if stderr is closed.
    let _ = writeln!(err, "validate: {problem}\n{USAGE}");
    2
}
