//! Test support: a kubelet a test plays, the restricted-profile checker,
//! request-level mocks and a scripted in-memory API server.

pub mod kubelet;
pub mod restricted;

pub use kubelet::PodScript;
