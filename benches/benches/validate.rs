//! cameleer-build throughput: validating a Spring-Boot-style fat JAR (the
//! same ~20 MB, 4,000-entry archive as `scripts/validate_vs_peers.sh`), a
//! plain JAR of many small classes, SHA-256 alone, and the build context.
//!
//! ```text
//! cargo bench -p cameleer-benches --bench validate
//! ```
#![allow(missing_docs)]

use std::hint::black_box;

use cameleer_build::testing::jars;
use cameleer_build::testing::{Entry, ZipBuilder};
use cameleer_build::{
    BuildContext, ContextFile, DockerfileSpec, Sha256Digest, ValidationPolicy, validate_jar,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn validation(c: &mut Criterion) {
    let policy = ValidationPolicy::default();
    let fat = jars::benchmark_fat_jar();
    let plain = {
        let mut zip = ZipBuilder::new();
        zip.add(Entry::streamed(
            "META-INF/MANIFEST.MF",
            jars::manifest(&[("Main-Class", "com.acme.Main")]),
        ));
        let mut rng = jars::Rng::new(9);
        for i in 0..5000 {
            zip.add(Entry::streamed(
                format!("com/acme/C{i}.class"),
                jars::class_file(61, 3000, &mut rng),
            ));
        }
        zip.add(Entry::streamed(
            "com/acme/Main.class",
            jars::class_file(61, 800, &mut rng),
        ));
        zip.finish()
    };
    let mut g = c.benchmark_group("validate_jar");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(fat.len() as u64));
    g.bench_function("spring_boot_fat_jar_20mb", |b| {
        b.iter(|| validate_jar(black_box(&fat[..]), &policy).unwrap())
    });
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("plain_jar_5000_classes", |b| {
        b.iter(|| validate_jar(black_box(&plain[..]), &policy).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(fat.len() as u64));
    g.bench_function("digest_20mb", |b| {
        b.iter(|| Sha256Digest::of(black_box(&fat)))
    });
    g.finish();

    let dockerfile = DockerfileSpec::new("eclipse-temurin:17-jre".parse().unwrap())
        .render()
        .unwrap();
    let agent = vec![1u8; 2 << 20];
    let mut g = c.benchmark_group("build_context");
    g.throughput(Throughput::Bytes((fat.len() + agent.len()) as u64));
    g.bench_function("tar_and_digest_22mb", |b| {
        b.iter(|| {
            BuildContext {
                dockerfile: dockerfile.clone(),
                agent: ContextFile::new(&agent[..], agent.len() as u64),
                app: ContextFile::new(&fat[..], fat.len() as u64),
            }
            .digest()
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, validation);
criterion_main!(benches);
