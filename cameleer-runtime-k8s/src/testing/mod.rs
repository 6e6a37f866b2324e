//! Test support: a kubelet a test plays, the restricted-profile checker,
//! request-level mocks and a scripted in-memory API server.

#[cfg(feature = "testing")]
pub mod cluster;
pub mod kubelet;
pub mod restricted;
#[cfg(feature = "testing")]
pub mod serve;

#[cfg(feature = "testing")]
pub use cluster::{FakeCluster, Recorded};
pub use kubelet::PodScript;
#[cfg(feature = "testing")]
pub use serve::ServedCluster;
