//! The command line: flags, environment variables, `--help`, `--version`
//! and the errors of bad values.

use super::*;

/// Parses `args`; panics with clap's message on an error.
fn parse(args: &[&str]) -> ServerArgs {
    ServerArgs::from_args(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The error of `args`, rendered as the binary prints it.
fn error(args: &[&str]) -> (ErrorKind, i32, String) {
    let e = ServerArgs::from_args(args).unwrap_err();
    (e.kind(), e.exit_code(), e.render().to_string())
}

#[test]
fn defaults_and_every_flag() {
    assert_eq!(parse(&[]), ServerArgs::default());
    let a = parse(&[
        "--listen=0.0.0.0:9000",
        "--data-dir",
        "/d",
        "--agent-jar",
        "/a.jar",
        "--agent-args",
        "x=1,y=2",
        "--base-image",
        "cameleer/jre:17",
        "--keep-versions",
        "3",
        "--admin-token-file",
        "/etc/cameleer/admin-token",
        "--log-format",
        "json",
        "--shutdown-grace-secs",
        "5",
    ]);
    assert_eq!(a.keep_versions, 3);
    assert_eq!(a.listen.port(), 9000);
    assert_eq!(a.data_dir, PathBuf::from("/d"));
    assert_eq!(a.agent_jar, Some(PathBuf::from("/a.jar")));
    assert_eq!(a.agent_args.as_deref(), Some("x=1,y=2"), "not split");
    assert_eq!(a.base_image.unwrap().to_string(), "cameleer/jre:17");
    assert_eq!(
        a.admin_token_file,
        Some(PathBuf::from("/etc/cameleer/admin-token"))
    );
    assert_eq!(a.log_format, LogFormat::Json);
    assert_eq!(a.shutdown_grace, Duration::from_secs(5));
    let k = parse(&[
        "--backend",
        "kubernetes",
        "--registry",
        "https://registry.example.com",
        "--pull-secret",
        "pull-a",
        "--pull-secret=pull-b",
    ]);
    assert_eq!(k.backend, Backend::Kubernetes);
    assert_eq!(k.image_builder, ImageBuilderKind::Registry, "the default");
    assert_eq!(k.pull_secrets, ["pull-a", "pull-b"]);
    let k = parse(&[
        "--backend",
        "kubernetes",
        "--image-builder",
        "kaniko",
        "--registry",
        "localhost:5001/cameleer",
        "--base-image",
        "eclipse-temurin:17-jre",
        "--push-secret",
        "push",
        "--insecure-registry",
    ]);
    assert_eq!(k.image_builder, ImageBuilderKind::Kaniko);
    assert_eq!(k.registry.as_deref(), Some("localhost:5001/cameleer"));
    assert_eq!(k.push_secret.as_deref(), Some("push"));
    assert!(k.insecure_registry);
    let r = parse(&[
        "--registry",
        "https://registry.example.com:5000",
        "--registry-credentials-file",
        "/etc/cameleer/registry",
        "--registry-ca=/etc/cameleer/ca.pem",
    ]);
    assert_eq!(
        r.registry.as_deref(),
        Some("https://registry.example.com:5000")
    );
    assert_eq!(
        r.registry_credentials_file,
        Some(PathBuf::from("/etc/cameleer/registry"))
    );
    assert_eq!(r.registry_ca, Some(PathBuf::from("/etc/cameleer/ca.pem")));
}

#[test]
fn the_log_store_is_sqlite_or_a_clickhouse_url() {
    let a = parse(&["--log-store", "clickhouse://ops@127.0.0.1:8123/logs"]);
    assert_eq!(
        a.log_store,
        LogStoreArg::ClickHouse("clickhouse://ops@127.0.0.1:8123/logs".into())
    );
    assert_eq!(
        parse(&["--log-store=sqlite"]).log_store,
        LogStoreArg::Sqlite
    );
    for bad in ["postgres://x", "clickhouse://h/bad;db"] {
        let (kind, code, e) = error(&["--log-store", bad]);
        assert_eq!((kind, code), (ErrorKind::ValueValidation, 2), "{e}");
        assert!(e.contains("--log-store"), "{e}");
    }
}

#[test]
fn a_password_never_comes_from_a_flag() {
    let (kind, code, e) = error(&["--log-store", "clickhouse://ops:secret@127.0.0.1/logs"]);
    assert_eq!((kind, code), (ErrorKind::ValueValidation, 2), "{e}");
    assert!(e.contains("CAMELEER_LOG_STORE"), "{e}");
    assert!(!e.contains("secret"), "the password is not echoed: {e}");
    let help = ServerArgs::command().render_long_help().to_string();
    assert!(!help.contains("--registry-password"), "{help}");
    assert!(!help.contains("--admin-token "), "{help}");
}

#[test]
fn bad_arguments_are_named_and_exit_with_2() {
    for (args, needle) in [
        (vec!["--listen", "nowhere"], "--listen"),
        (vec!["--listen"], "--listen"),
        (vec!["--base-image", "UPPER"], "--base-image"),
        (vec!["serve"], "serve"),
        (vec!["--nope"], "--nope"),
        (vec!["--backend", "podman"], "--backend"),
        (vec!["--keep-versions", "0"], "--keep-versions"),
        (vec!["--keep-versions=ten"], "--keep-versions"),
        (
            vec!["--shutdown-grace-secs", "soon"],
            "--shutdown-grace-secs",
        ),
        (vec!["--shutdown-grace-secs=-1"], "--shutdown-grace-secs"),
        (vec!["--log-format", "xml"], "--log-format"),
        (vec!["--backend", "kubernetes"], "--registry"),
        (
            vec!["--backend", "kubernetes", "--registry", "localhost:5001/c"],
            "--registry",
        ),
        (
            vec![
                "--backend",
                "kubernetes",
                "--image-builder",
                "kaniko",
                "--registry",
                "localhost:5001/c",
            ],
            "--base-image",
        ),
        (
            vec![
                "--backend",
                "kubernetes",
                "--registry",
                "https://r.example.com",
                "--push-secret",
                "p",
            ],
            "kaniko",
        ),
        (vec!["--image-builder", "kaniko"], "--backend kubernetes"),
        (vec!["--image-builder", "buildah"], "--image-builder"),
        (vec!["--pull-secret", "p"], "--backend kubernetes"),
        (vec!["--registry", "http://10.0.0.1:5000"], "loopback"),
        (vec!["--registry-ca", "/ca.pem"], "need --registry"),
        (
            vec![
                "--registry",
                "http://127.0.0.1:5000",
                "--base-image",
                "a/b:1",
            ],
            "--base-image",
        ),
    ] {
        let (kind, code, e) = error(&args);
        assert_eq!(code, 2, "{args:?}: {kind:?} {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(e.starts_with("error: "), "{e}");
    }
}

#[test]
fn help_lists_every_flag_with_its_variable_and_version_names_the_crate() {
    let (kind, code, help) = error(&["--help"]);
    assert_eq!((kind, code), (ErrorKind::DisplayHelp, 0));
    let command = ServerArgs::command();
    let flags: Vec<_> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .collect();
    assert!(flags.len() >= 18, "{flags:?}");
    for flag in flags {
        assert!(help.contains(&format!("--{flag}")), "--{flag}: {help}");
        if flag != "help" && flag != "version" {
            let var = format!("CAMELEER_{}", flag.to_uppercase().replace('-', "_"));
            let var = if flag == "pull-secret" {
                "CAMELEER_PULL_SECRETS".to_owned()
            } else {
                var
            };
            assert!(help.contains(&var), "{var}: {help}");
        }
    }
    let (kind, code, version) = error(&["--version"]);
    assert_eq!((kind, code), (ErrorKind::DisplayVersion, 0));
    assert_eq!(
        version.trim(),
        format!("server {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The variable a child process of [`flags_come_from_the_environment`]
/// is told to check by.
const CHILD: &str = "CAMELEER_TEST_ENV_CHILD";

/// Runs this test binary again with `env`, for the test `name` only: the
/// environment of this process is shared by every test thread, and
/// `std::env::set_var` is unsafe.
fn run_child(name: &str, env: &[(&str, &str)]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn flags_come_from_the_environment() {
    run_child(
        "server::tests::child_reads_the_environment",
        &[
            ("CAMELEER_LISTEN", "0.0.0.0:9100"),
            ("CAMELEER_DATA_DIR", "/var/lib/cameleer"),
            ("CAMELEER_BACKEND", "kubernetes"),
            ("CAMELEER_REGISTRY", "https://r.example.com"),
            ("CAMELEER_PULL_SECRETS", "pull-a,pull-b"),
            ("CAMELEER_AGENT_ARGS", "x=1,y=2"),
            ("CAMELEER_KEEP_VERSIONS", "4"),
            ("CAMELEER_LOG_FORMAT", "json"),
            ("CAMELEER_SHUTDOWN_GRACE_SECS", "7"),
            ("CAMELEER_ADMIN_TOKEN_FILE", "/run/secrets/admin"),
            ("CAMELEER_LOG_STORE", "clickhouse://ops:pw@127.0.0.1/logs"),
        ],
    );
}

#[test]
fn child_reads_the_environment() {
    if std::env::var_os(CHILD).is_none() {
        return; // Only as the child of the test above.
    }
    let a = parse(&[]);
    assert_eq!(a.listen, "0.0.0.0:9100".parse().unwrap());
    assert_eq!(a.data_dir, PathBuf::from("/var/lib/cameleer"));
    assert_eq!(a.backend, Backend::Kubernetes);
    assert_eq!(a.pull_secrets, ["pull-a", "pull-b"]);
    assert_eq!(a.agent_args.as_deref(), Some("x=1,y=2"));
    assert_eq!(a.keep_versions, 4);
    assert_eq!(a.log_format, LogFormat::Json);
    assert_eq!(a.shutdown_grace, Duration::from_secs(7));
    assert_eq!(
        a.admin_token_file,
        Some(PathBuf::from("/run/secrets/admin"))
    );
    // A password from the environment is fine, and not shown in --help.
    assert!(a.log_store.has_password());
    let help = ServerArgs::command().render_long_help().to_string();
    assert!(!help.contains("ops:pw"), "{help}");
    // A flag wins over its variable; a repeated flag replaces the list.
    let b = parse(&["--keep-versions", "2", "--pull-secret", "only"]);
    assert_eq!(
        (b.keep_versions, b.pull_secrets),
        (2, vec!["only".to_owned()])
    );
}

#[test]
fn bad_values_from_the_environment_exit_with_2() {
    run_child(
        "server::tests::child_rejects_a_bad_variable",
        &[("CAMELEER_KEEP_VERSIONS", "0")],
    );
}

#[test]
fn child_rejects_a_bad_variable() {
    if std::env::var_os(CHILD).is_none() {
        return; // Only as the child of the test above.
    }
    let (kind, code, e) = error(&[]);
    assert_eq!((kind, code), (ErrorKind::ValueValidation, 2), "{e}");
    assert!(e.contains("--keep-versions"), "{e}");
    assert!(e.contains("at least 1"), "{e}");
}
