//! [`ServedCluster`]: a [`FakeCluster`] served over HTTP on loopback, for
//! tests that drive a separate process (a server binary) which finds its
//! cluster through a kubeconfig, as in production.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::cluster::FakeCluster;

/// A [`FakeCluster`] answering on `http://127.0.0.1:<port>`; it stops
/// answering when dropped. Made by [`FakeCluster::serve`].
#[derive(Debug)]
pub struct ServedCluster {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServedCluster {
    /// Where the API server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API server's URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context is this cluster (no
    /// credentials: the fake asks for none), default namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            url = self.url()
        )
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`, for a process's
    /// `KUBECONFIG`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

impl Drop for ServedCluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCluster {
    /// Serves this cluster over HTTP/1.1 on a free loopback port until the
    /// returned [`ServedCluster`] is dropped. The cluster is shared: the
    /// test keeps playing the kubelet on `self` while another process
    /// talks to it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use cameleer_runtime_k8s::testing::FakeCluster;
    ///
    /// let cluster = FakeCluster::new();
    /// let served = cluster.serve().await?;
    /// let dir = tempfile::tempdir()?;
    /// served.write_kubeconfig(dir.path().join("kubeconfig"))?;
    /// // KUBECONFIG=<dir>/kubeconfig server --backend kubernetes …
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self) -> std::io::Result<ServedCluster> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let cluster = self.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let cluster = cluster.clone();
                        async move { Ok::<_, Infallible>(cluster.handle(req).await) }
                    });
                    // A connection the client drops ends here; the next is
                    // served as usual.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(ServedCluster { addr, task })
    }
}
