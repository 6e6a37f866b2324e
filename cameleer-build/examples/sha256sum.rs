//! Prints the SHA-256 of each file, like `sha256sum`: the baseline that
//! shows our hashing runs at the speed of `openssl dgst -sha256`
//! (sha2 picks the SHA-NI instructions at run time where the CPU has them).
//!
//! ```text
//! cargo run --release -p cameleer-build --example sha256sum -- FILE...
//! ```

use std::io::Read;

use sha2::{Digest, Sha256};

fn main() {
    let mut status = 0;
    for path in std::env::args().skip(1) {
        match hash(&path) {
            Ok(hex) => println!("{hex}  {path}"),
            Err(e) => {
                eprintln!("sha256sum: {path}: {e}");
                status = 1;
            }
        }
    }
    std::process::exit(status);
}

fn hash(path: &str) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}
