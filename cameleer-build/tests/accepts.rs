//! JARs that real projects ship are accepted, and what is reported about
//! them is right.

use cameleer_build::testing::jars::{self, JAVA_17, Rng};
use cameleer_build::testing::{Entry, ZipBuilder};
use cameleer_build::{FindingKind, Runtime, Sha256Digest, ValidationPolicy, validate_jar};

fn policy() -> ValidationPolicy {
    ValidationPolicy::default()
}

#[test]
fn plain_jar_reports_digest_size_and_main_class() {
    let bytes = jars::plain_jar("com.acme.Main");
    let v = validate_jar(&bytes[..], &policy()).unwrap();
    assert_eq!(v.sha256, Sha256Digest::of(&bytes));
    assert_eq!(v.size, bytes.len() as u64);
    assert_eq!(v.main_class, "com.acme.Main");
    assert_eq!(v.runtime, Runtime::Plain);
    assert_eq!(v.max_class_version, Some(JAVA_17));
    assert!(v.findings.is_empty(), "{:?}", v.findings);
}

#[test]
fn spring_boot_reports_start_class_and_scans_nested_libs() {
    let lib = jars::library_jar("org/lib", 5, 3000, 1);
    let bytes = jars::spring_boot_jar("com.acme.App", 3, &[("lib-1.0.jar".into(), lib)]);
    let v = validate_jar(&bytes[..], &policy()).unwrap();
    assert_eq!(v.main_class, "com.acme.App");
    assert_eq!(v.runtime, Runtime::SpringBoot);
}

#[test]
fn benchmark_fat_jar_is_accepted() {
    let bytes = jars::benchmark_fat_jar();
    let t = std::time::Instant::now();
    let v = validate_jar(&bytes[..], &policy()).unwrap();
    eprintln!("{} bytes in {:?}", bytes.len(), t.elapsed());
    assert_eq!(v.runtime, Runtime::SpringBoot);
}
