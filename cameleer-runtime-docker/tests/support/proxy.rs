//! A loopback TCP proxy in front of the engine's socket, so a test can cut
//! every connection of an orchestrator (its event stream included) for
//! real, and let it reconnect later.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
struct State {
    cut: AtomicBool,
    refused: AtomicUsize,
    connections: Mutex<Vec<AbortHandle>>,
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
        let task = tokio::spawn(async move {
            if let Err(e) = forward(client, &upstream).await {
                eprintln!("proxy connection ended: {e}");
            }
        });
        let mut connections = state.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

async fn forward(mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
    if let Some(path) = upstream.strip_prefix("unix://") {
        let mut engine = UnixStream::connect(path).await?;
        tokio::io::copy_bidirectional(&mut client, &mut engine).await?;
    } else {
        let addr = upstream
            .trim_start_matches("tcp://")
            .trim_start_matches("http://");
        let mut engine = TcpStream::connect(addr).await?;
        tokio::io::copy_bidirectional(&mut client, &mut engine).await?;
    }
    Ok(())
}
