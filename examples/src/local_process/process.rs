//! One app process: its command line, the task that supervises it, and its
//! stop.
//!
//! Each process has one supervisor task that owns the [`Child`]: it reaps
//! the process, records how it ended and reports it. Signals go through the
//! supervisor too, so a signal is only ever sent to a pid that has not been
//! reaped yet (and so cannot have been reused). Dropping the last handle to
//! a [`Proc`] kills the process.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cameleer_runtime::launch::{HeapSizing, JVM_OOM_MARKER, JvmLaunch, LaunchError};
use cameleer_runtime::{AppConfig, LogSource, StatusReason};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use super::LocalProcessOptions;
use super::logs::{LogBuffer, pump};

/// How long the supervisor waits for the output pipes after an exit, so
/// that the last lines are in the logs before the exit is reported.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The `java` command of an app: the agent, the resource hints, the JAR and
/// the app's args; the config's JVM options after the runtime's own (so they
/// can override them) and before `-jar`; a clean environment.
pub(super) fn command(
    options: &LocalProcessOptions,
    jar: &Path,
    config: &AppConfig,
    workdir: &Path,
) -> Result<Command, LaunchError> {
    // The launch command every backend runs, sized explicitly (a local
    // process has no cgroup of its own); the config's JVM options after the
    // runtime's flags and before `-jar`, as arguments, not
    // JDK_JAVA_OPTIONS (the launcher echoes that to stderr). `AppConfig::
    // validate` has refused launcher-only arguments.
    let launch = JvmLaunch {
        java: options.java.to_string_lossy().into_owned(),
        agent_path: options.agent_jar.to_string_lossy().into_owned(),
        agent_args: options.agent_args.clone(),
        heap: HeapSizing::Explicit {
            memory_mb: config.resources.memory_mb,
            processors: config.resources.cpu_millis.div_ceil(1000).max(1),
            percentage: 75.0,
        },
        // The JVM takes its home from the password database, not $HOME.
        extra_flags: vec![format!("-Duser.home={}", workdir.to_string_lossy())],
        jar_path: jar.to_string_lossy().into_owned(),
    };
    let argv = launch.argv(&config.jvm_options, &config.args)?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // Nothing of the controller's environment leaks into the app.
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", workdir)
        .env("LANG", "C.UTF-8")
        .envs(&config.env);
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
    out_of_memory: bool,
    error: Option<String>,
}

impl Exit {
    fn of(status: std::io::Result<ExitStatus>, out_of_memory: bool) -> Self {
        match status {
            Ok(status) => Self {
                code: status.code(),
                signal: status.signal(),
                out_of_memory,
                error: None,
            },
            Err(e) => Self::lost(format!("waiting for the process failed: {e}")),
        }
    }

    fn lost(error: String) -> Self {
        Self {
            code: None,
            signal: None,
            out_of_memory: false,
            error: Some(error),
        }
    }

    /// The exit code, with the shell's `128 + signal` for a signal.
    pub(super) fn exit_code(&self) -> Option<i64> {
        self.code
            .map(i64::from)
            .or(self.signal.map(|s| 128 + i64::from(s)))
    }

    /// Why the process ended.
    pub(super) fn reason(&self) -> StatusReason {
        if self.out_of_memory {
            return StatusReason::JvmOutOfMemory;
        }
        match (self.exit_code(), &self.error) {
            (Some(code), _) => StatusReason::Exited {
                exit_code: Some(code),
            },
            (None, Some(error)) => StatusReason::other(error.clone()),
            (None, None) => StatusReason::Exited { exit_code: None },
        }
    }
}

enum Signal {
    Term,
    Kill,
}

/// A started process. Dropping the last handle kills it.
#[derive(Debug)]
pub(super) struct Proc {
    pid: u32,
    signals: mpsc::UnboundedSender<Signal>,
    exited: watch::Receiver<Option<Exit>>,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        })
    }
}

impl Proc {
    /// Starts `cmd` with its output going to `logs`. `on_exit` runs once,
    /// when the process has ended and its output is read, before
    /// [`wait`](Self::wait) returns.
    pub(super) fn spawn(
        mut cmd: Command,
        logs: &Arc<LogBuffer>,
        on_exit: impl FnOnce(&Exit) + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let oom = Arc::new(AtomicBool::new(false));
        let mut pumps = Vec::new();
        let pipes = [
            (LogSource::Stdout, child.stdout.take().map(boxed)),
            (LogSource::Stderr, child.stderr.take().map(boxed)),
        ];
        for (source, pipe) in pipes {
            let Some(pipe) = pipe else { continue };
            let oom = oom.clone();
            let seen = move |line: &str| {
                if line.contains(JVM_OOM_MARKER) {
                    oom.store(true, Ordering::Relaxed);
                }
            };
            pumps.push(tokio::spawn(pump(pipe, source, logs.open_writer(), seen)));
        }
        let (signals, commands) = mpsc::unbounded_channel();
        let (report, exited) = watch::channel(None);
        tokio::spawn(async move {
            let status = supervise(&mut child, pid, commands).await;
            let drained = futures::future::join_all(pumps);
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
            let exit = Exit::of(status, oom.load(Ordering::Relaxed));
            on_exit(&exit);
            report.send_replace(Some(exit));
        });
        Ok(Arc::new(Self {
            pid,
            signals,
            exited,
        }))
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// How it ended, if it has.
    pub(super) fn exit(&self) -> Option<Exit> {
        self.exited.borrow().clone()
    }

    /// Waits until it has ended.
    pub(super) async fn wait(&self) -> Exit {
        let mut exited = self.exited.clone();
        match exited.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or_else(|| Exit::lost("ended".into())),
            Err(_) => Exit::lost("its supervisor ended (the runtime is shutting down)".into()),
        }
    }

    /// SIGTERM, then SIGKILL after `timeout`; returns once it has ended.
    pub(super) async fn stop(&self, timeout: Duration) -> Exit {
        if let Some(exit) = self.exit() {
            return exit;
        }
        let _ = self.signals.send(Signal::Term);
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                let _ = self.signals.send(Signal::Kill);
                self.wait().await
            }
        }
    }
}

fn boxed(pipe: impl tokio::io::AsyncRead + Send + Unpin + 'static) -> Box<dyn AsyncReadSend> {
    Box::new(pipe)
}

trait AsyncReadSend: tokio::io::AsyncRead + Send + Unpin {}
impl<T: tokio::io::AsyncRead + Send + Unpin> AsyncReadSend for T {}

/// Reaps the child, delivering signals meanwhile; a closed signal channel
/// (every [`Proc`] handle dropped) kills it.
async fn supervise(
    child: &mut Child,
    pid: u32,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> std::io::Result<ExitStatus> {
    let mut open = true;
    loop {
        let signal = tokio::select! {
            status = child.wait() => return status,
            signal = signals.recv(), if open => signal,
        };
        // The child has not been reaped (only `wait` above reaps it), so
        // `pid` is still ours.
        match signal {
            Some(Signal::Term) => {
                let sent = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
                if !sent.is_ok_and(|s| s.success()) {
                    let _ = child.start_kill();
                }
            }
            Some(Signal::Kill) => {
                let _ = child.start_kill();
            }
            None => {
                open = false;
                let _ = child.start_kill();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_as_reasons() {
        let code = Exit {
            code: Some(3),
            signal: None,
            out_of_memory: false,
            error: None,
        };
        assert_eq!(
            (code.reason(), code.exit_code()),
            (StatusReason::Exited { exit_code: Some(3) }, Some(3))
        );
        let killed = Exit {
            code: None,
            signal: Some(9),
            out_of_memory: false,
            error: None,
        };
        assert_eq!(killed.exit_code(), Some(137));
        assert_eq!(
            killed.reason(),
            StatusReason::Exited {
                exit_code: Some(137)
            }
        );
        let oom = Exit {
            out_of_memory: true,
            ..code
        };
        assert_eq!(oom.reason(), StatusReason::JvmOutOfMemory);
    }
}
