//! The Java fixture apps the tests and benchmarks deploy, compiled on demand
//! and cached.
//!
//! The sources live in `fixtures/java/` at the workspace root and are
//! embedded here with `include_str!`, so a JAR can be produced from any
//! working directory. [`compile_jar`](super::compile_jar) caches by content:
//! the first call compiles (about a second per JAR), later ones return the
//! cached path. What each app does, and the environment variables that steer
//! it, is described on [`FixtureApp`] and in `fixtures/java/README.md`. The
//! demo agent they are run with is in [`agent`](super::agent).
//!
//! Available with the `fixtures` cargo feature (test-only; it turns on
//! `java`).
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_build::java::agent::agent_jar;
//! use cameleer_build::java::fixtures::{self, FixtureApp};
//!
//! let agent = agent_jar()?;
//! let app = fixtures::app_jar(FixtureApp::Logging)?;
//! // java -javaagent:<agent> -jar <app>  prints AGENT_LINE_PREFIX and APP_STARTED_LINE.
//! # Ok::<(), cameleer_build::java::JdkError>(())
//! ```

use std::path::PathBuf;

use super::JdkError;

/// The line every fixture app prints first.
pub const APP_STARTED_LINE: &str = "[app] started";

/// The fixture applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FixtureApp {
    /// Logs `[app] started`, then `[app] line N` every `LOG_INTERVAL_MS`
    /// (1000) and stays up; every `STDERR_EVERY`-th (3) line also goes to
    /// stderr; `LOG_LINES=n` makes it exit with 0 after n lines.
    Logging,
    /// Prints `[app] started` and exits with `CRASH_EXIT_CODE` (3) after
    /// `CRASH_DELAY_MS` (500).
    Crashing,
    /// Allocates and touches off-heap memory until the cgroup OOM killer
    /// ends it (`OOM_MODE=heap` for a Java `OutOfMemoryError` instead).
    Oom,
    /// HTTP on `PORT` (8080): `/health` answers `HEALTH_STATUS` (200); logs
    /// `[app] listening on port N`; `LISTEN_DELAY_MS` delays listening.
    Listening,
    /// Prints the heap limit, the memory and CPUs the JVM sees, its user and
    /// encoding as `[app] key=value` lines, then exits (`STAY_UP=true` stays).
    MemoryReport,
}

impl FixtureApp {
    /// Every fixture app.
    pub const ALL: [FixtureApp; 5] = [
        FixtureApp::Logging,
        FixtureApp::Crashing,
        FixtureApp::Oom,
        FixtureApp::Listening,
        FixtureApp::MemoryReport,
    ];

    /// The JAR's base name, which is also the directory under `fixtures/java`.
    pub fn name(self) -> &'static str {
        match self {
            FixtureApp::Logging => "logging-app",
            FixtureApp::Crashing => "crashing-app",
            FixtureApp::Oom => "oom-app",
            FixtureApp::Listening => "listening-app",
            FixtureApp::MemoryReport => "memory-report-app",
        }
    }

    /// The `Main-Class` of the JAR.
    pub fn main_class(self) -> &'static str {
        match self {
            FixtureApp::Logging => "io.cameleer.fixtures.logging.LoggingApp",
            FixtureApp::Crashing => "io.cameleer.fixtures.crashing.CrashingApp",
            FixtureApp::Oom => "io.cameleer.fixtures.oom.OomApp",
            FixtureApp::Listening => "io.cameleer.fixtures.listening.ListeningApp",
            FixtureApp::MemoryReport => "io.cameleer.fixtures.memory.MemoryReportApp",
        }
    }

    /// The source file, as `(path inside the source tree, text)`.
    fn source(self) -> (&'static str, &'static str) {
        macro_rules! app {
            ($dir:literal, $path:literal) => {
                (
                    $path,
                    include_str!(concat!("../../../fixtures/java/", $dir, "/src/", $path)),
                )
            };
        }
        match self {
            FixtureApp::Logging => app!(
                "logging-app",
                "io/cameleer/fixtures/logging/LoggingApp.java"
            ),
            FixtureApp::Crashing => app!(
                "crashing-app",
                "io/cameleer/fixtures/crashing/CrashingApp.java"
            ),
            FixtureApp::Oom => app!("oom-app", "io/cameleer/fixtures/oom/OomApp.java"),
            FixtureApp::Listening => app!(
                "listening-app",
                "io/cameleer/fixtures/listening/ListeningApp.java"
            ),
            FixtureApp::MemoryReport => {
                app!(
                    "memory-report-app",
                    "io/cameleer/fixtures/memory/MemoryReportApp.java"
                )
            }
        }
    }
}

/// The runnable JAR of a fixture app (`java -jar` works on it).
pub fn app_jar(app: FixtureApp) -> Result<PathBuf, JdkError> {
    let source = app.source();
    super::compile_jar(app.name(), &[source], &[("Main-Class", app.main_class())])
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::java::Jdk;
    use crate::java::agent::{AGENT_LINE_PREFIX, agent_jar};

    fn java(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let jdk = Jdk::locate().unwrap();
        let mut cmd = Command::new(jdk.tool("java"));
        cmd.args(args).envs(env.iter().copied());
        cmd.output().unwrap()
    }

    #[test]
    fn every_fixture_compiles_once_and_is_then_served_from_the_cache() {
        for app in FixtureApp::ALL {
            let first = app_jar(app).unwrap();
            let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
            let again = app_jar(app).unwrap();
            assert_eq!(first, again);
            assert_eq!(
                modified,
                std::fs::metadata(&again).unwrap().modified().unwrap()
            );
            assert!(
                first
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(app.name())
            );
        }
    }

    #[test]
    fn the_agent_runs_before_the_app_on_the_host_jvm() {
        let agent = agent_jar().unwrap();
        let app = app_jar(FixtureApp::Logging).unwrap();
        let out = java(
            &[
                &format!("-javaagent:{}=tenant=acme", agent.display()),
                "-jar",
                app.to_str().unwrap(),
                "one",
            ],
            &[
                ("LOG_LINES", "3"),
                ("LOG_INTERVAL_MS", "1"),
                ("STDERR_EVERY", "3"),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], format!("{AGENT_LINE_PREFIX}tenant=acme"));
        assert_eq!(lines[1], APP_STARTED_LINE);
        assert_eq!(lines[2], "[app] args=[one]");
        assert!(stdout.contains("[app] line 3"), "{stdout}");
        assert_eq!(stderr.trim(), "[app] stderr line 3");
    }

    #[test]
    fn the_crashing_app_exits_with_the_configured_code() {
        let app = app_jar(FixtureApp::Crashing).unwrap();
        let out = java(&["-jar", app.to_str().unwrap()], &[("CRASH_DELAY_MS", "1")]);
        assert_eq!(out.status.code(), Some(3));
        let out = java(
            &["-jar", app.to_str().unwrap()],
            &[("CRASH_DELAY_MS", "1"), ("CRASH_EXIT_CODE", "7")],
        );
        assert_eq!(out.status.code(), Some(7));
    }

    #[test]
    fn the_heap_mode_of_the_oom_app_ends_in_a_java_out_of_memory_error() {
        let app = app_jar(FixtureApp::Oom).unwrap();
        let out = java(
            &[
                "-Xmx32m",
                "-XX:+ExitOnOutOfMemoryError",
                "-jar",
                app.to_str().unwrap(),
            ],
            &[("OOM_MODE", "heap"), ("OOM_PAUSE_MS", "0")],
        );
        // HotSpot reports the exit on stdout: "Terminating due to java.lang.OutOfMemoryError".
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stdout).contains("OutOfMemoryError"));
    }
}
