//! Feeds arbitrary bytes to `validate_jar`: it must return, never panic or
//! hang, and what it accepts must be reported truthfully.
#![no_main]

use cameleer_build::{Limits, Sha256Digest, ValidationPolicy, validate_jar};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the code paths are the same.
    let policy = ValidationPolicy {
        limits: Limits {
            max_total_uncompressed: 8 << 20,
            max_upload_bytes: 1 << 20,
            ratio_threshold_bytes: 64 << 10,
            ..Limits::default()
        },
        // Both the sequential and the parallel nested scan.
        parallel: data.len() % 2 == 0,
        ..ValidationPolicy::default()
    };
    // Read in odd-sized pieces to exercise buffer boundaries.
    let reader = Chunked {
        data,
        step: 1 + data.len() % 7,
    };
    match validate_jar(reader, &policy) {
        Ok(jar) => {
            assert_eq!(jar.sha256, Sha256Digest::of(data));
            assert_eq!(jar.size, data.len() as u64);
            assert!(!jar.main_class.is_empty());
        }
        Err(e) => {
            assert!(cameleer_build::ValidationError::CODES.contains(&e.code()));
            let _ = e.to_string();
        }
    }
});

struct Chunked<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.step * 997);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
