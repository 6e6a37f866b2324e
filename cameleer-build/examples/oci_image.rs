//! Assembles a Cameleer image without Docker and writes it as an OCI image
//! layout: a JRE directory (a `jlink` output), the agent JAR and the
//! application JAR, each its own layer; prints the digests and how long
//! each layer took.
//!
//! ```text
//! cargo run --release -p cameleer-build --example oci_image -- \
//!     [--level N] [--base ROOTFS_DIR] OUT_DIR JRE_DIR AGENT_JAR APP_JAR [REF_NAME]
//! ```
//!
//! `--level` is the gzip level of every layer (default 6); `--base` adds a
//! first layer with the contents of a directory at the image root (a
//! jlinked JRE still needs a C library from somewhere to run).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cameleer_build::DockerfileSpec;
use cameleer_build::oci::{self, ImageConfig, LayerBlob, LayerBuilder, LayerOptions, OciImage};

const USAGE: &str =
    "usage: oci_image [--level N] [--base ROOTFS_DIR] OUT_DIR JRE_DIR AGENT_JAR APP_JAR [REF_NAME]";

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = LayerOptions::default();
    let mut base = None;
    loop {
        match args.first().map(String::as_str) {
            Some("--level") if args.len() > 1 => {
                opts.compression_level = args[1].parse().unwrap_or_else(|_| usage());
                args.drain(..2);
            }
            Some("--base") if args.len() > 1 => {
                base = Some(PathBuf::from(&args[1]));
                args.drain(..2);
            }
            _ => break,
        }
    }
    if !(4..=5).contains(&args.len()) {
        usage();
    }
    if let Err(e) = run(&args, opts, base.as_deref()) {
        eprintln!("oci_image: {e} ({})", e.code());
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn run(args: &[String], opts: LayerOptions, base: Option<&Path>) -> Result<(), oci::OciError> {
    let out = PathBuf::from(&args[0]);
    let scratch = out.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| oci::OciError::Io {
        context: format!("creating {}", scratch.display()),
        source: e,
    })?;
    let mut layers = Vec::new();
    if let Some(base) = base {
        let mut layer = LayerBuilder::with_options(opts);
        layer.add_tree("/", base)?;
        layers.push(timed("base", &scratch, layer)?);
    }
    layers.push(timed("jre", &scratch, oci::jre_layer(&args[1], opts)?)?);
    layers.push(timed("agent", &scratch, oci::agent_layer(&args[2], opts)?)?);
    layers.push(timed("app", &scratch, oci::app_layer(&args[3], opts)?)?);
    let argv = DockerfileSpec::new("scratch".parse().expect("a valid reference"))
        .command()
        .expect("the default spec is valid");
    let started = Instant::now();
    let image = OciImage::assemble(&ImageConfig::new(argv), layers)?;
    println!("config+manifest: {:?}", started.elapsed());
    let started = Instant::now();
    oci::write_oci_layout(&out, &image, args.get(4).map(String::as_str))?;
    println!("layout: {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&scratch);
    println!("config   {}", image.config.digest.oci());
    println!("manifest {}", image.manifest.digest.oci());
    Ok(())
}

fn timed(name: &str, dir: &Path, layer: LayerBuilder<'_>) -> Result<LayerBlob, oci::OciError> {
    let started = Instant::now();
    let blob = layer.write_file(dir.join(format!("{name}.tar.gz")))?;
    let l = &blob.layer;
    println!(
        "{name:5} {:>10} bytes tar, {:>10} bytes gzip, {:?}, digest {}",
        l.uncompressed_size,
        l.size,
        started.elapsed(),
        l.digest.oci()
    );
    Ok(blob.with_created_by(format!("cameleer-build oci {name} layer")))
}
