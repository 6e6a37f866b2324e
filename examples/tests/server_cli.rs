//! The server binary's command line as a shell sees it: `--help` and
//! `--version` on stdout with exit code 0, bad values on stderr with exit
//! code 2, from a flag or from a `CAMELEER_*` variable. No engine needed:
//! arguments are checked before anything starts.

use std::process::{Command, Output};

fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_server"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("CAMELEER_LOG_STORE")
        .output()
        .expect("run the server")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version_print_on_stdout_and_exit_0() {
    let help = server(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let out = text(&help.stdout);
    for needle in [
        "--listen",
        "--data-dir",
        "--pull-secret",
        "--admin-token-file",
        "--log-format",
        "--shutdown-grace-secs",
        "CAMELEER_DATA_DIR",
        "CAMELEER_PULL_SECRETS",
        "- json:",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let version = server(&["--version"], &[]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout),
        format!("server {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_values_name_the_flag_on_stderr_and_exit_2() {
    for (args, env, needle) in [
        (vec!["--keep-versions", "0"], vec![], "--keep-versions"),
        (vec!["--log-format", "xml"], vec![], "--log-format"),
        (vec!["--listen", "nowhere"], vec![], "--listen"),
        (vec![], vec![("CAMELEER_BACKEND", "podman")], "--backend"),
        (
            vec![],
            vec![("CAMELEER_SHUTDOWN_GRACE_SECS", "soon")],
            "--shutdown-grace-secs",
        ),
        (vec!["--pull-secret", "p"], vec![], "--backend kubernetes"),
    ] {
        let out = server(&args, &env);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
}

#[test]
fn a_password_in_a_flag_is_refused_without_echoing_it() {
    let out = server(
        &["--log-store", "clickhouse://ops:hunter2@127.0.0.1/logs"],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CAMELEER_LOG_STORE"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
