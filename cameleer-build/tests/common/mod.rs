//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cameleer_build::testing::jars::{self, JAVA_17, Rng};
use cameleer_build::testing::{Entry, ZipBuilder};
use cameleer_build::{ValidatedJar, ValidationError, ValidationPolicy, validate_jar};

/// The main class every minimal JAR names.
pub const MAIN: &str = "com.acme.Main";

/// A plausible class file of the given major version.
pub fn class(major: u16) -> Vec<u8> {
    jars::class_file(major, 300, &mut Rng::new(u64::from(major)))
}

/// A builder that already holds a manifest naming [`MAIN`] and its class.
pub fn jar() -> ZipBuilder {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::streamed(
        "META-INF/MANIFEST.MF",
        jars::manifest(&[("Main-Class", MAIN)]),
    ));
    zip.add(Entry::deflated("com/acme/Main.class", class(JAVA_17)));
    zip
}

/// Validates with the default policy.
pub fn check(bytes: &[u8]) -> Result<ValidatedJar, ValidationError> {
    validate_jar(bytes, &ValidationPolicy::default())
}

/// Asserts a rejection with `code` whose message mentions `needle`.
#[track_caller]
pub fn assert_rejected(result: Result<ValidatedJar, ValidationError>, code: &str, needle: &str) {
    match result {
        Ok(v) => panic!("accepted, expected {code}: {v:?}"),
        Err(e) => {
            assert_eq!(e.code(), code, "wrong code; message: {e}");
            assert!(
                e.to_string().contains(needle),
                "message {:?} lacks {needle:?}",
                e.to_string()
            );
        }
    }
}
