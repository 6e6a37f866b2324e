//! What a built layer is, and where its bytes are.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::Sha256Digest;

/// A built layer: what a manifest and a config say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layer {
    /// SHA-256 of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: Sha256Digest,
    /// SHA-256 of the gzip blob: the manifest's layer digest.
    pub digest: Sha256Digest,
    /// Size of the gzip blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    /// In memory.
    Memory(Vec<u8>),
    /// In a file.
    File(PathBuf),
}

impl BlobSource {
    /// Opens the bytes for reading.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(match self {
            Self::Memory(bytes) => Box::new(&bytes[..]),
            Self::File(path) => Box::new(File::open(path)?),
        })
    }
}

/// A layer together with where its gzip blob can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Its digests and sizes.
    pub layer: Layer,
    /// Where the gzip blob is.
    pub source: BlobSource,
    /// What made the layer, for the config's history (`created_by`).
    pub created_by: Option<String>,
}

impl LayerBlob {
    /// Sets [`created_by`](Self::created_by).
    pub fn with_created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }
}
