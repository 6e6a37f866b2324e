//! Writes the benchmark's Spring-Boot-style fat JAR (about 20 MB, 4,000
//! entries: deflated application classes and STORED nested libraries) to
//! the given path. Used by `benches/scripts/validate_vs_peers.sh`.
//!
//! ```text
//! cargo run --release -p cameleer-build --example make_fat_jar -- /tmp/fat.jar
//! ```

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: make_fat_jar OUT.jar");
        std::process::exit(2);
    };
    let bytes = cameleer_build::testing::jars::benchmark_fat_jar();
    if let Err(e) = std::fs::write(&path, &bytes) {
        eprintln!("make_fat_jar: {path}: {e}");
        std::process::exit(1);
    }
    println!("{path}: {} bytes", bytes.len());
}
