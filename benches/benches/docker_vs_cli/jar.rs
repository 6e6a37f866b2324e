//! A runnable ~20 MB JAR: the logging fixture app's classes plus
//! incompressible resources, different bytes for every seed.

use std::path::Path;

use cameleer_build::java::Jdk;
use cameleer_build::testing::jars::{Rng, manifest};
use cameleer_build::testing::{Entry, ZipBuilder};

use crate::common::BenchError;

const SOURCE: &str = include_str!(
    "../../../fixtures/java/logging-app/src/io/cameleer/fixtures/logging/LoggingApp.java"
);
const MAIN: &str = "io.cameleer.fixtures.logging.LoggingApp";

/// Megabytes of filler in each JAR.
pub const FILLER_MB: usize = 20;

/// The compiled classes of the app, to wrap into JARs.
pub struct RunnableJar {
    classes: Vec<(String, Vec<u8>)>,
}

impl RunnableJar {
    /// Compiles the logging fixture app with the machine's `javac`.
    pub fn compile() -> Result<RunnableJar, BenchError> {
        let jdk = Jdk::locate()?;
        let work = tempfile::tempdir()?;
        let source = work.path().join("LoggingApp.java");
        std::fs::write(&source, SOURCE)?;
        let classes_dir = work.path().join("classes");
        let out = std::process::Command::new(jdk.tool("javac"))
            .args(["--release", "17", "-nowarn", "-d"])
            .arg(&classes_dir)
            .arg(&source)
            .output()?;
        if !out.status.success() {
            return Err(format!("javac: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let mut classes = Vec::new();
        collect(&classes_dir, &classes_dir, &mut classes)?;
        classes.sort();
        Ok(RunnableJar { classes })
    }

    /// A JAR whose `Main-Class` is the app, with [`FILLER_MB`] STORED
    /// resources of 1 MiB of random bytes from `seed`.
    pub fn build(&self, seed: u64) -> Vec<u8> {
        let mut zip = ZipBuilder::new();
        zip.add(Entry::deflated(
            "META-INF/MANIFEST.MF",
            manifest(&[("Main-Class", MAIN), ("Created-By", "cameleer-benches")]),
        ));
        for (name, bytes) in &self.classes {
            zip.add(Entry::deflated(name, bytes));
        }
        let mut rng = Rng::new(seed);
        for i in 0..FILLER_MB {
            let data: Vec<u8> = (0..(1 << 20) / 8)
                .flat_map(|_| rng.next_u64().to_le_bytes())
                .collect();
            zip.add(Entry::stored(format!("filler/blob-{i:02}.bin"), data));
        }
        zip.finish()
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), BenchError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "class") {
            let name = path
                .strip_prefix(root)?
                .to_str()
                .ok_or("a class name that is not UTF-8")?
                .to_string();
            out.push((name, std::fs::read(&path)?));
        }
    }
    Ok(())
}
