//! A loopback TCP proxy in front of the engine's socket, so a test can cut
//! every connection of an orchestrator (its event stream included) for
//! real, and let it reconnect later, or hold one request on its way to the
//! engine while the engine's state changes under it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};

struct State {
    cut: AtomicBool,
    refused: AtomicUsize,
    connections: Mutex<Vec<AbortHandle>>,
    /// The bytes that mark the next request to hold, once armed.
    hold: Mutex<Option<Vec<u8>>>,
    /// Signalled when a request is held.
    held: Notify,
    /// A permit lets the held request through.
    release: Semaphore,
}

impl Default for State {
    fn default() -> Self {
        Self {
            cut: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            connections: Mutex::default(),
            hold: Mutex::default(),
            held: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

impl State {
    /// Waits for [`EngineProxy::release`] if `bytes` (what a client sent)
    /// hold the armed pattern; disarms it.
    async fn maybe_hold(&self, bytes: &[u8]) {
        let hit = {
            let mut hold = self.hold.lock().unwrap();
            let hit = hold
                .as_ref()
                .is_some_and(|p| bytes.windows(p.len()).any(|w| w == p.as_slice()));
            if hit {
                *hold = None;
            }
            hit
        };
        if hit {
            self.held.notify_one();
            self.release.acquire().await.unwrap().forget();
        }
    }
}

/// Forwards `127.0.0.1:<port>` to the engine; see [`EngineProxy::cut`].
pub struct EngineProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl EngineProxy {
    /// A proxy to the engine named by `DOCKER_HOST` (or the local socket).
    pub async fn start() -> EngineProxy {
        let upstream = cameleer_runtime_docker::connect::docker_host();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, state.clone()));
        EngineProxy {
            addr,
            state,
            accept,
        }
    }

    /// The address to connect bollard to.
    pub fn host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Breaks every open connection, and refuses new ones until
    /// [`restore`](Self::restore).
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for c in self.state.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Holds the next request whose bytes contain `pattern` (e.g. `/logs?`)
    /// before it reaches the engine, until [`release`](Self::release); its
    /// connection waits, others pass.
    pub fn hold_next(&self, pattern: &str) {
        *self.state.hold.lock().unwrap() = Some(pattern.as_bytes().to_vec());
    }

    /// Waits until a request is held.
    pub async fn held(&self) {
        self.state.held.notified().await;
    }

    /// Lets the held request through to the engine.
    pub fn release(&self) {
        self.state.release.add_permits(1);
    }

    /// How many connections were refused while cut (reconnection attempts).
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.state.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, state: Arc<State>) {
    while let Ok((client, _)) = listener.accept().await {
        if state.cut.load(Ordering::SeqCst) {
            state.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let conn_state = state.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = forward(client, &upstream, conn_state).await {
                eprintln!("proxy connection ended: {e}");
            }
        });
        let mut connections = state.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

async fn forward(client: TcpStream, upstream: &str, state: Arc<State>) -> std::io::Result<()> {
    if let Some(path) = upstream.strip_prefix("unix://") {
        pump(client, UnixStream::connect(path).await?, state).await
    } else {
        let addr = upstream
            .trim_start_matches("tcp://")
            .trim_start_matches("http://");
        pump(client, TcpStream::connect(addr).await?, state).await
    }
}

/// Copies both ways; what the client sends may be held (see
/// [`EngineProxy::hold_next`]). Each end is shut down for writing when the
/// other stops sending, as an HTTP/1.0 body ends.
async fn pump<E>(client: TcpStream, engine: E, state: Arc<State>) -> std::io::Result<()>
where
    E: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_engine, mut to_engine) = tokio::io::split(engine);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_engine.shutdown().await;
            }
            state.maybe_hold(&buf[..n]).await;
            to_engine.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut from_engine, &mut to_client).await?;
        to_client.shutdown().await
    };
    tokio::try_join!(up, down).map(drop)
}
