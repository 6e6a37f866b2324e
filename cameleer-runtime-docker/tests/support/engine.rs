//! A second Docker Engine, started by the test next to the machine's own,
//! so a test can kill and restart an engine without disturbing the others.
//!
//! It has its own socket, data root, exec root (where it runs its own
//! containerd), pid file, config file (the machine's `daemon.json` names
//! the main data root) and cgroup parent. It leaves the host's iptables
//! alone (`--iptables=false --ip-masq=false --ip-forward=false`) and gets a
//! default bridge of its own, created here (`--bridge=cam<random>`, on a
//! /24 of 10.200–249.x.200 that nothing else here uses).
//!
//! Two dockerd start-up paths delete the interface `docker0` whoever owns
//! it, which cuts the main engine's default bridge: `--bridge=none`, and a
//! restart with `--default-address-pool` set. Neither is used, and every
//! start checks that the main engine's `docker0` is still there. The
//! engine's own networks come from the default pools; it skips subnets the
//! host already routes (the main engine's networks). Storage is `vfs`: no
//! overlay mounts.
//!
//! Everything lives under `/tmp/cam-dockerd-<random>`, which the guard
//! removes when dropped, also on panic: it starts the engine again if it
//! was killed, removes its containers and networks, stops it (SIGTERM,
//! then SIGKILL), kills what is left of its containerd and shims (by pid,
//! found by the directory in their command line) and their container
//! processes, unmounts what is still mounted there, deletes its bridge, and
//! removes the directory and the cgroups.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;

/// The main engine's default bridge, which must survive.
const MAIN_BRIDGE: &str = "/sys/class/net/docker0";

pub struct SecondEngine {
    pub dir: PathBuf,
    /// `unix://…/docker.sock`.
    pub host: String,
    cgroup: String,
    /// The default bridge's interface name.
    bridge: String,
    /// Whether the main engine's `docker0` existed when this one started.
    main_bridge: bool,
    child: Option<Child>,
}

impl SecondEngine {
    /// Starts the engine and waits until it answers; `Err` says why it could
    /// not start (with the tail of its log).
    pub async fn start() -> Result<SecondEngine, String> {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let dir = PathBuf::from(format!("/tmp/cam-dockerd-{}", &random[..8]));
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("exec")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("daemon.json"), "{}").map_err(|e| e.to_string())?;
        let mut engine = SecondEngine {
            host: format!("unix://{}/docker.sock", dir.display()),
            cgroup: format!("cameleer-test-{}", &random[..8]),
            bridge: format!("cam{}", &random[..8]),
            main_bridge: Path::new(MAIN_BRIDGE).exists(),
            dir,
            child: None,
        };
        let octet = 200 + u8::from_str_radix(&random[..2], 16).unwrap_or(0) % 50;
        let address = format!("10.{octet}.200.1/24");
        for args in [
            vec!["link", "add", &engine.bridge, "type", "bridge"],
            vec!["addr", "add", &address, "dev", &engine.bridge],
            vec!["link", "set", &engine.bridge, "up"],
        ] {
            let status = Command::new("ip").args(&args).status();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                return Err(format!("ip {}: {status:?}", args.join(" ")));
            }
        }
        engine.run().await?;
        Ok(engine)
    }

    /// Starts the engine (again) and waits until it answers.
    pub async fn run(&mut self) -> Result<(), String> {
        self.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(docker) = self.connect().await
                && docker.ping().await.is_ok()
            {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("dockerd exited with {status}: {}", self.log_tail()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "dockerd did not answer in 30 s: {}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.main_bridge && !Path::new(MAIN_BRIDGE).exists() {
            return Err("starting the second engine removed the main engine's docker0".into());
        }
        Ok(())
    }

    /// Starts the engine's process.
    fn spawn(&mut self) -> Result<(), String> {
        self.await_old_containerd();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .map_err(|e| e.to_string())?;
        let dir = self.dir.display().to_string();
        let child = Command::new("dockerd")
            .args([
                "--config-file",
                &format!("{dir}/daemon.json"),
                "--host",
                &self.host,
                "--data-root",
                &format!("{dir}/data"),
                "--exec-root",
                &format!("{dir}/exec"),
                "--pidfile",
                &format!("{dir}/docker.pid"),
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--userland-proxy=false",
                "--storage-driver=vfs",
                "--cgroup-parent",
                &format!("/{}", self.cgroup),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run dockerd: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// A client of this engine.
    pub async fn connect(&self) -> Result<Docker, String> {
        cameleer_runtime_docker::connect::connect_to(&self.host, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())
    }

    /// Kills the engine outright (SIGKILL), as a crash would. Its
    /// containerd dies with it (dockerd starts it with a parent-death
    /// signal); the shims and the containers stay.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.await_old_containerd();
    }

    /// Waits (5 s at most, then kills it by pid) until the containerd of a
    /// killed engine has exited: a new engine that finds it in the pid file
    /// reuses it instead of starting its own, and then waits a minute for a
    /// socket nobody serves.
    fn await_old_containerd(&self) {
        let pid_file = self.dir.join("exec/containerd/containerd.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return;
        };
        let ours = || {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*self.dir.to_string_lossy()))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while ours() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if ours() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(200));
        }
        // Gone (or the pid now names another process): no stale pid file.
        let _ = std::fs::remove_file(pid_file);
    }

    /// The last lines of the engine's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Force-removes every container and network (starting the engine
    /// again if it was killed), on a thread with its own runtime: this runs
    /// from `Drop`.
    fn remove_everything(&mut self) {
        if self.child.is_none() && self.spawn().is_err() {
            return;
        }
        let host = self.host.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let docker = match ready(&host).await {
                    Ok(d) => d,
                    Err(e) => return eprintln!("cleaning up the second engine: {e}"),
                };
                let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
                    .all(true)
                    .build();
                for c in docker
                    .list_containers(Some(options))
                    .await
                    .unwrap_or_default()
                {
                    let Some(id) = c.id else { continue };
                    let remove = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .build();
                    let _ = docker.remove_container(&id, Some(remove)).await;
                }
                for n in docker
                    .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
                    .await
                    .unwrap_or_default()
                {
                    let predefined = matches!(n.name.as_deref(), Some("bridge" | "host" | "none"));
                    if let (Some(id), false) = (n.id, predefined) {
                        let _ = docker.remove_network(&id).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A client of the engine at `host` once it answers (30 s at most).
async fn ready(host: &str) -> Result<Docker, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cameleer_runtime_docker::connect::connect_to(host, Duration::from_secs(10)).await {
            Ok(d) => return Ok(d),
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.remove_everything();
        self.stop();
        let dir = self.dir.display().to_string();
        kill_leftovers(&dir);
        unmount_under(&dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("removing {dir}: {e}");
        }
        remove_cgroups(&self.cgroup);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// Kills, by pid, the processes whose command line names `dir` (the
/// engine's containerd and shims) and their children (container processes).
fn kill_leftovers(dir: &str) {
    let mut pids = Vec::new();
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(dir) {
            pids.push(pid);
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …; comm may hold spaces, so split after ')'.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let children: Vec<u32> = parents
        .iter()
        .filter(|(_, ppid)| pids.contains(ppid))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in children.iter().chain(&pids) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Unmounts (lazily, deepest first) whatever is still mounted under `dir`.
fn unmount_under(dir: &str) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

/// Removes the engine's cgroup parent in every hierarchy, deepest first.
fn remove_cgroups(name: &str) {
    fn remove(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = hierarchy.path().join(name);
        if dir.exists() {
            remove(&dir);
        }
    }
}
