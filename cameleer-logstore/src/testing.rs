//! A real `clickhouse-server` on loopback for tests and benchmarks
//! (feature `testing`): its own config, data in a temp dir, free ports.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use url::Url;

/// The server binary Debian's `clickhouse-server` installs.
pub const SERVER_BIN: &str = "/usr/sbin/clickhouse-server";

/// A running server, killed and its data removed on drop.
#[derive(Debug)]
pub struct ClickHouseServer {
    child: Child,
    http: Url,
    tcp_port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ClickHouseServer {
    /// Starts a server and waits until it answers (up to 60 s). Fails, with
    /// the reason, when the binary is missing: tests must not pass by
    /// skipping.
    pub fn start() -> Result<Self, String> {
        if !Path::new(SERVER_BIN).exists() {
            return Err(format!(
                "{SERVER_BIN} is missing: install Debian's clickhouse-server (.ci/run does)"
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let d = dir.path();
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            std::fs::create_dir_all(d.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
        }
        let (http_port, tcp_port) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let dp = d.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dp}/log/server.log</log><errorlog>{dp}/log/err.log</errorlog><console>0</console></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dp}/data/</path>
  <tmp_path>{dp}/tmp/</tmp_path>
  <user_files_path>{dp}/user_files/</user_files_path>
  <format_schema_path>{dp}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
"#
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
        std::fs::write(d.join("config.xml"), config).map_err(|e| e.to_string())?;
        std::fs::write(d.join("users.xml"), users).map_err(|e| e.to_string())?;
        let child = Command::new(SERVER_BIN)
            .arg(format!("--config-file={}", d.join("config.xml").display()))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {SERVER_BIN}: {e}"))?;
        let http =
            Url::parse(&format!("http://127.0.0.1:{http_port}/")).map_err(|e| e.to_string())?;
        let mut server = Self {
            child,
            http,
            tcp_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let err = std::fs::read_to_string(server._dir.path().join("log/err.log"))
                    .unwrap_or_default();
                return Err(format!("clickhouse-server exited ({status}): {err}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let _ = server.child.kill();
                return Err("clickhouse-server did not answer within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its HTTP interface.
    pub fn http_url(&self) -> &Url {
        &self.http
    }

    /// Its native protocol port (for `clickhouse-client --port`).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// A `clickhouse://` URL for `database` on it.
    pub fn store_url(&self, database: &str) -> String {
        format!(
            "clickhouse://127.0.0.1:{}/{database}",
            self.http.port().unwrap_or(8123)
        )
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
