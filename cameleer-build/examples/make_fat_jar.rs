//! Writes the benchmark's Spring-Boot-style fat JAR (about 20 MB, 4,000
//! entries: deflated application classes and STORED nested libraries) to
//! the given path. Used by `benches/scripts/validate_vs_peers.sh`.
//!
//! The libraries are written as Maven and Gradle write them (sizes in the
//! local headers); with `--streamed`, as `jar` writes them (every entry
//! followed by a data descriptor).
//!
//! ```text
//! cargo run --release -p cameleer-build --example make_fat_jar -- [--streamed] /tmp/fat.jar
//! ```

use cameleer_build::testing::jars;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (streamed, path) = match args.as_slice() {
        [path] if !path.starts_with("--") => (false, path),
        [flag, path] if flag == "--streamed" => (true, path),
        _ => {
            eprintln!("usage: make_fat_jar [--streamed] OUT.jar");
            std::process::exit(2);
        }
    };
    let bytes = if streamed {
        jars::benchmark_fat_jar_streamed()
    } else {
        jars::benchmark_fat_jar()
    };
    if let Err(e) = std::fs::write(path, &bytes) {
        eprintln!("make_fat_jar: {path}: {e}");
        std::process::exit(1);
    }
    println!("{path}: {} bytes", bytes.len());
}
