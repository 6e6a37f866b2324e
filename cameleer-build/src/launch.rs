//! The JVM launch command every backend runs, and the rules for the JVM
//! options a customer may add to it.
//!
//! One function of strings, used by every route to a running app: the
//! Dockerfile's `ENTRYPOINT`, the committed and the daemonless OCI images,
//! the Docker backend's container command, and a backend that runs `java`
//! directly. So the agent, the heap sizing and the exit-on-OOM flag cannot
//! differ between them, and neither can what a customer's option may do.
//!
//! ```text
//! java -javaagent:<agent>[=<args>] <heap flags> -XX:+ExitOnOutOfMemoryError <extra flags>
//!      <customer's jvm_options …> -jar <jar> <customer's args …>
//! ```
//!
//! The customer's options come after the runtime's flags (the last
//! occurrence of a HotSpot flag wins, so they can override the defaults)
//! and before `-jar`; they are argv elements, never a shell string and never
//! `JDK_JAVA_OPTIONS` (which the launcher echoes to stderr, secrets and
//! all).

use std::fmt;

/// The exit code of a JVM that `-XX:+ExitOnOutOfMemoryError` ended.
pub const JVM_OOM_EXIT_CODE: i64 = 3;

/// What HotSpot prints when `-XX:+ExitOnOutOfMemoryError` ends the JVM;
/// with [`JVM_OOM_EXIT_CODE`] it tells a heap exhaustion from an app that
/// exits with 3 itself.
pub const JVM_OOM_MARKER: &str = "Terminating due to java.lang.OutOfMemoryError";

/// Launcher arguments that are not JVM options: they pick the main class,
/// print and exit, or read more arguments from a file. The runtime picks the
/// main class itself (`-jar`), so any of these among the JVM options would
/// either stop the app before `main` or replace it.
pub const LAUNCHER_ONLY_OPTIONS: &[&str] = &[
    "-jar",
    "-m",
    "--module",
    "--dry-run",
    "-h",
    "-?",
    "-help",
    "--help",
    "-X",
    "--help-extra",
    "-version",
    "--version",
    "-fullversion",
    "--full-version",
    "--list-modules",
    "--describe-module",
    "-d",
    "--validate-modules",
    "--source",
];

/// Options that load native or Java agents: the runtime attaches the
/// Cameleer agent itself, and a second agent could do anything.
pub const AGENT_OPTIONS: &[&str] = &["-javaagent", "-agentlib", "-agentpath"];

/// A JVM option the launch command cannot take, or a command line it cannot
/// put options into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct LaunchError {
    /// The offending field: `jvm_options[2]`, or `jvm_options` for the
    /// command line as a whole.
    pub field: String,
    /// Which rule it breaks.
    pub reason: String,
}

impl LaunchError {
    /// The stable code: `invalid_config`, as for any other config field.
    pub fn code(&self) -> &'static str {
        "invalid_config"
    }
}

/// Checks one JVM option: it starts with `-` (so no `@argfile`, which the
/// launcher would expand), has no NUL, is not a launcher-only argument
/// ([`LAUNCHER_ONLY_OPTIONS`]) and loads no agent ([`AGENT_OPTIONS`]).
/// `field` names it in the error (`jvm_options[i]`).
///
/// Each option is one argument: `--add-opens=java.base/java.lang=ALL-UNNAMED`,
/// not two.
///
/// # Examples
///
/// ```
/// use cameleer_build::launch::check_jvm_option;
///
/// check_jvm_option("jvm_options[0]", "-Dgreeting=hello world").unwrap();
/// assert!(check_jvm_option("jvm_options[0]", "-jar").is_err());
/// assert!(check_jvm_option("jvm_options[0]", "@/etc/passwd").is_err());
/// assert!(check_jvm_option("jvm_options[0]", "-javaagent:/evil.jar").is_err());
/// ```
pub fn check_jvm_option(field: &str, opt: &str) -> Result<(), LaunchError> {
    let err = |reason: String| LaunchError {
        field: field.to_string(),
        reason,
    };
    if !opt.starts_with('-') {
        return Err(err(
            "a JVM option starts with '-' (and @argfiles are not allowed)".into(),
        ));
    }
    if opt.contains('\0') {
        return Err(err("must not contain NUL".into()));
    }
    let name = opt.split_once('=').map_or(opt, |(name, _)| name);
    if LAUNCHER_ONLY_OPTIONS.contains(&name) {
        return Err(err(format!(
            "{name} is a launcher argument, not a JVM option: it would replace the app or stop it before main"
        )));
    }
    if let Some(agent) = AGENT_OPTIONS.iter().find(|a| opt.starts_with(**a)) {
        return Err(err(format!(
            "{agent} is not allowed: the runtime attaches the Cameleer agent itself"
        )));
    }
    Ok(())
}

/// [`check_jvm_option`] for each option, named `jvm_options[i]`.
pub fn check_jvm_options(options: &[String]) -> Result<(), LaunchError> {
    options
        .iter()
        .enumerate()
        .try_for_each(|(i, opt)| check_jvm_option(&format!("jvm_options[{i}]"), opt))
}

/// How the JVM sizes its heap.
#[derive(Debug, Clone, PartialEq)]
pub enum HeapSizing {
    /// A share of the memory the JVM sees (`-XX:MaxRAMPercentage`): the
    /// container's limit, since the JVM reads its cgroup.
    RamPercentage(f64),
    /// A share of an explicit memory size (`-XX:MaxRAM=<mib>m` with
    /// `-XX:MaxRAMPercentage`) and processor count
    /// (`-XX:ActiveProcessorCount`), for a JVM with no cgroup of its own.
    Explicit {
        /// The memory the JVM may assume, in MiB.
        memory_mb: u32,
        /// The processors it may assume.
        processors: u32,
        /// The heap's share of `memory_mb`.
        percentage: f64,
    },
}

/// The JVM launch command of an app.
///
/// # Examples
///
/// ```
/// use cameleer_build::launch::JvmLaunch;
///
/// let launch = JvmLaunch::default();
/// assert_eq!(
///     launch.entrypoint(),
///     ["java", "-javaagent:/opt/cameleer/cameleer-agent.jar", "-XX:MaxRAMPercentage=75.0",
///      "-XX:+ExitOnOutOfMemoryError", "-jar", "/app/app.jar"],
/// );
/// let argv = launch.argv(&["-Xss1m".into()], &["--port=8080".into()]).unwrap();
/// assert_eq!(&argv[4..], ["-Xss1m", "-jar", "/app/app.jar", "--port=8080"]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JvmLaunch {
    /// The `java` binary: `java` on the image's `PATH`, or a path.
    pub java: String,
    /// Where the agent JAR is. Default `/opt/cameleer/cameleer-agent.jar`.
    pub agent_path: String,
    /// The agent's arguments (`-javaagent:<path>=<args>`).
    pub agent_args: Option<String>,
    /// How the heap is sized. Default 75 % of the container's memory.
    pub heap: HeapSizing,
    /// Runtime flags after the defaults and before the customer's options
    /// (a backend's own, such as `-Duser.home=…`).
    pub extra_flags: Vec<String>,
    /// Where the application JAR is. Default `/app/app.jar`.
    pub jar_path: String,
}

impl Default for JvmLaunch {
    fn default() -> Self {
        Self {
            java: "java".into(),
            agent_path: crate::IMAGE_AGENT_PATH.into(),
            agent_args: None,
            heap: HeapSizing::RamPercentage(75.0),
            extra_flags: Vec::new(),
            jar_path: crate::IMAGE_APP_PATH.into(),
        }
    }
}

impl JvmLaunch {
    /// The command without the customer's options and args: what an image
    /// carries as its `ENTRYPOINT`.
    pub fn entrypoint(&self) -> Vec<String> {
        let mut agent = format!("-javaagent:{}", self.agent_path);
        if let Some(args) = &self.agent_args {
            agent.push('=');
            agent.push_str(args);
        }
        let mut argv = vec![self.java.clone(), agent];
        match &self.heap {
            HeapSizing::RamPercentage(p) => argv.push(format!("-XX:MaxRAMPercentage={p:?}")),
            HeapSizing::Explicit {
                memory_mb,
                processors,
                percentage,
            } => {
                argv.push(format!("-XX:MaxRAM={memory_mb}m"));
                argv.push(format!("-XX:MaxRAMPercentage={percentage:?}"));
                argv.push(format!("-XX:ActiveProcessorCount={}", processors.max(&1)));
            }
        }
        argv.push("-XX:+ExitOnOutOfMemoryError".into());
        argv.extend(self.extra_flags.iter().cloned());
        argv.push("-jar".into());
        argv.push(self.jar_path.clone());
        argv
    }

    /// The whole command: [`entrypoint`](Self::entrypoint) with `jvm_options`
    /// inserted before `-jar` and `args` after the JAR.
    ///
    /// # Errors
    ///
    /// An option [`check_jvm_option`] refuses, named `jvm_options[i]`.
    pub fn argv(
        &self,
        jvm_options: &[String],
        args: &[String],
    ) -> Result<Vec<String>, LaunchError> {
        let mut argv = insert_jvm_options(&self.entrypoint(), jvm_options)?;
        argv.extend(args.iter().cloned());
        Ok(argv)
    }
}

/// An existing `entrypoint` (an image's) with `options` inserted just before
/// its `-jar` (or, for a command line without `-jar` that starts with a
/// `java` binary, right after it), so they come after its own flags and
/// override them.
///
/// # Errors
///
/// Options [`check_jvm_option`] refuses, and options with an entrypoint that
/// is not a `java` command line (there is no safe place for them).
///
/// # Examples
///
/// ```
/// use cameleer_build::launch::insert_jvm_options;
///
/// let image = ["java", "-XX:MaxRAMPercentage=75.0", "-jar", "/app/app.jar"].map(String::from);
/// let argv = insert_jvm_options(&image, &["-XX:MaxRAMPercentage=50".into(), "-Da=x y".into()]).unwrap();
/// assert_eq!(
///     argv,
///     ["java", "-XX:MaxRAMPercentage=75.0", "-XX:MaxRAMPercentage=50", "-Da=x y", "-jar", "/app/app.jar"],
/// );
/// ```
pub fn insert_jvm_options(
    entrypoint: &[String],
    options: &[String],
) -> Result<Vec<String>, LaunchError> {
    check_jvm_options(options)?;
    if options.is_empty() {
        return Ok(entrypoint.to_vec());
    }
    let at = match entrypoint.iter().position(|a| a == "-jar") {
        Some(jar) => jar,
        None if entrypoint
            .first()
            .is_some_and(|java| java == "java" || java.ends_with("/java")) =>
        {
            1
        }
        None => {
            return Err(LaunchError {
                field: "jvm_options".into(),
                reason: format!(
                    "the entrypoint {entrypoint:?} is not a java command line, so there is no place for JVM options"
                ),
            });
        }
    };
    let mut argv = Vec::with_capacity(entrypoint.len() + options.len());
    argv.extend_from_slice(&entrypoint[..at]);
    argv.extend_from_slice(options);
    argv.extend_from_slice(&entrypoint[at..]);
    Ok(argv)
}

impl fmt::Display for JvmLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entrypoint().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_go_in_as_they_are_just_before_the_jar() {
        let image = JvmLaunch::default().entrypoint();
        let tricky = opts(&[
            "-XX:MaxRAMPercentage=50",
            "-Da=x y",
            "-Db=q\"uote 'single'",
            "-Dc=\t tabs\\back",
            "-Dd=@notafile",
            "-De=",
        ]);
        let argv = insert_jvm_options(&image, &tricky).unwrap();
        let mut expected = image.clone();
        expected.splice(4..4, tricky.iter().cloned());
        assert_eq!(argv, expected);
        assert_eq!(argv.last().map(String::as_str), Some("/app/app.jar"));
        assert_eq!(insert_jvm_options(&image, &[]).unwrap(), image);
        assert_eq!(
            insert_jvm_options(&opts(&["/bin/sh"]), &[]).unwrap(),
            opts(&["/bin/sh"])
        );
    }

    #[test]
    fn an_entrypoint_without_jar_takes_options_after_java_or_not_at_all() {
        let argv = insert_jvm_options(
            &opts(&["/opt/java/bin/java", "-cp", "/app", "Main"]),
            &opts(&["-Xss1m"]),
        )
        .unwrap();
        assert_eq!(
            argv,
            opts(&["/opt/java/bin/java", "-Xss1m", "-cp", "/app", "Main"])
        );
        let err =
            insert_jvm_options(&opts(&["/bin/sh", "-c", "x"]), &opts(&["-Xss1m"])).unwrap_err();
        assert_eq!(err.field, "jvm_options");
    }

    #[test]
    fn launcher_arguments_and_agents_are_rejected_by_index() {
        for bad in [
            "-jar",
            "--module=foo/bar",
            "-version",
            "--dry-run",
            "notadash",
            "@argfile",
            "-D\0",
            "-javaagent:/evil.jar",
            "-agentlib:jdwp=transport=dt_socket",
            "-agentpath:/x.so",
        ] {
            let err = check_jvm_options(&opts(&["-Xmx64m", bad])).unwrap_err();
            assert_eq!(err.field, "jvm_options[1]", "{bad}");
            assert_eq!(err.code(), "invalid_config");
        }
        check_jvm_options(&opts(&["-jarx", "-Xshare:auto", "-showversion"])).unwrap();
    }

    #[test]
    fn explicit_sizing_for_a_jvm_without_a_cgroup() {
        let launch = JvmLaunch {
            java: "/usr/bin/java".into(),
            agent_path: "/tmp/agent.jar".into(),
            agent_args: Some("tenant=acme".into()),
            heap: HeapSizing::Explicit {
                memory_mb: 256,
                processors: 0,
                percentage: 75.0,
            },
            extra_flags: opts(&["-Duser.home=/tmp/w"]),
            jar_path: "/tmp/app.jar".into(),
        };
        assert_eq!(
            launch.argv(&opts(&["-Xss1m"]), &opts(&["a"])).unwrap(),
            opts(&[
                "/usr/bin/java",
                "-javaagent:/tmp/agent.jar=tenant=acme",
                "-XX:MaxRAM=256m",
                "-XX:MaxRAMPercentage=75.0",
                "-XX:ActiveProcessorCount=1",
                "-XX:+ExitOnOutOfMemoryError",
                "-Duser.home=/tmp/w",
                "-Xss1m",
                "-jar",
                "/tmp/app.jar",
                "a",
            ])
        );
    }
}
