//! The content scan: manifests and main classes, log4j, class versions,
//! runtime detection and findings.

mod common;

use cameleer_build::testing::jars::{self, JAVA_17};
use cameleer_build::testing::{Entry, ZipBuilder};
use cameleer_build::{FindingKind, Runtime, ValidationPolicy, validate_jar};
use common::{MAIN, assert_rejected, check, class, jar};

fn with_manifest(attrs: &[(&str, &str)], classes: &[&str]) -> Vec<u8> {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::streamed(
        "META-INF/MANIFEST.MF",
        jars::manifest(attrs),
    ));
    for c in classes {
        zip.add(Entry::deflated(*c, class(JAVA_17)));
    }
    zip.finish()
}

#[test]
fn requires_a_main_class() {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::deflated("com/acme/Main.class", class(JAVA_17)));
    assert_rejected(
        check(&zip.finish()),
        "missing_main_class",
        "no META-INF/MANIFEST.MF",
    );
    let no_main = with_manifest(&[("Created-By", "17")], &["com/acme/Main.class"]);
    assert_rejected(check(&no_main), "missing_main_class", "has no Main-Class");
    let mut zip = ZipBuilder::new();
    zip.add(Entry::deflated(
        "META-INF/MANIFEST.MF",
        b"Manifest-Version: 1.0\r\nMain-Class: com.acme.Main",
    ));
    assert_rejected(check(&zip.finish()), "missing_main_class", "no line end");
    let boot = with_manifest(&[("Main-Class", jars::SPRING_BOOT_LAUNCHER)], &[]);
    assert_rejected(check(&boot), "missing_main_class", "no Start-Class");
}

#[test]
fn main_class_must_exist_unless_a_class_path_brings_it() {
    let missing = with_manifest(&[("Main-Class", "com.acme.Gone")], &["com/acme/Main.class"]);
    assert_rejected(
        check(&missing),
        "main_class_not_found",
        "com/acme/Gone.class",
    );
    let elsewhere = with_manifest(
        &[("Main-Class", "com.acme.Gone"), ("Class-Path", "lib/a.jar")],
        &[],
    );
    let v = check(&elsewhere).unwrap();
    assert!(v.findings.iter().any(|f| f.kind == FindingKind::ClassPath));
    let bad = with_manifest(
        &[("Main-Class", "com.acme.Main;rm -rf")],
        &["com/acme/Main.class"],
    );
    assert_rejected(check(&bad), "invalid_manifest", "is not a class name");
    let mut zip = ZipBuilder::new();
    zip.add(Entry::deflated(
        "META-INF/MANIFEST.MF",
        b"Main-Class com.acme.Main\r\n",
    ));
    assert_rejected(check(&zip.finish()), "invalid_manifest", "line 1");
}

#[test]
fn reads_main_class_across_72_byte_continuation_lines() {
    let long =
        "com.acme.a.very.long.package.name.that.certainly.needs.wrapping.at.seventy.two.bytes.Main";
    let path = format!("{}.class", long.replace('.', "/"));
    let text = String::from_utf8(jars::manifest(&[("Main-Class", long)])).unwrap();
    assert!(text.contains("\r\n "), "the manifest really is wrapped");
    let bytes = with_manifest(&[("Main-Class", long)], &[&path]);
    assert_eq!(check(&bytes).unwrap().main_class, long);
}

#[test]
fn detects_runtimes() {
    let boot = jars::spring_boot_jar("com.acme.App", 1, &[]);
    let v = check(&boot).unwrap();
    assert_eq!(
        (v.runtime, v.main_class.as_str()),
        (Runtime::SpringBoot, "com.acme.App")
    );

    let quarkus = with_manifest(
        &[(
            "Main-Class",
            "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
        )],
        &["io/quarkus/bootstrap/runner/QuarkusEntryPoint.class"],
    );
    assert_eq!(check(&quarkus).unwrap().runtime, Runtime::Quarkus);
    let quarkus_uber = with_manifest(
        &[("Main-Class", MAIN)],
        &[
            "com/acme/Main.class",
            "io/quarkus/runtime/Application.class",
        ],
    );
    assert_eq!(check(&quarkus_uber).unwrap().runtime, Runtime::Quarkus);
    assert_eq!(check(&jar().finish()).unwrap().runtime, Runtime::Plain);
    assert_eq!(
        serde_json::to_string(&Runtime::SpringBoot).unwrap(),
        "\"spring_boot\""
    );
}

fn log4j_core(version: Option<&str>, jndi_path: &str) -> Vec<u8> {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::streamed("META-INF/MANIFEST.MF", jars::manifest(&[])));
    if let Some(v) = version {
        zip.add(Entry::deflated(
            "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
            format!("groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion={v}\n"),
        ));
    }
    zip.add(Entry::deflated(jndi_path, class(52)));
    zip.finish()
}

const JNDI: &str = "org/apache/logging/log4j/core/lookup/JndiLookup.class";

#[test]
fn rejects_vulnerable_log4j_in_nested_jars() {
    let lib = log4j_core(Some("2.14.1"), JNDI);
    let boot = jars::spring_boot_jar("com.acme.App", 1, &[("log4j-core-2.14.1.jar".into(), lib)]);
    assert_rejected(
        check(&boot),
        "vulnerable_dependency",
        &format!("BOOT-INF/lib/log4j-core-2.14.1.jar!/{JNDI}"),
    );
    for fixed in ["2.17.1", "2.12.4", "2.3.2", "2.23.1"] {
        let lib = log4j_core(Some(fixed), JNDI);
        let boot = jars::spring_boot_jar(
            "com.acme.App",
            1,
            &[(format!("log4j-core-{fixed}.jar"), lib)],
        );
        assert!(check(&boot).is_ok(), "{fixed}");
    }
    // No pom.properties: the file name tells.
    let lib = log4j_core(None, JNDI);
    let boot = jars::spring_boot_jar("com.acme.App", 1, &[("log4j-core-2.16.0.jar".into(), lib)]);
    assert_rejected(check(&boot), "vulnerable_dependency", "log4j-core 2.16.0");
}

#[test]
fn rejects_shaded_log4j_and_decides_on_unknown_versions() {
    let shaded = format!("com/acme/shaded/{JNDI}");
    let mut zip = jar();
    zip.add(Entry::deflated(
        "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
        "version=2.15.0\n",
    ));
    zip.add(Entry::deflated(&shaded, class(52)));
    assert_rejected(check(&zip.finish()), "vulnerable_dependency", &shaded);

    let mut zip = jar();
    zip.add(Entry::deflated(&shaded, class(52)));
    let unknown = zip.finish();
    assert_rejected(
        check(&unknown),
        "vulnerable_dependency",
        "cannot be determined",
    );
    let lenient = ValidationPolicy {
        reject_unversioned_jndi_lookup: false,
        ..Default::default()
    };
    let v = validate_jar(&unknown[..], &lenient).unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.kind == FindingKind::UnversionedJndiLookup
                && f.entry.as_deref() == Some(shaded.as_str()))
    );
}

#[test]
fn holds_class_versions_to_the_target_release() {
    let mut zip = jar();
    zip.add(Entry::deflated("com/acme/Newer.class", class(65)));
    let bytes = zip.finish();
    assert_rejected(
        check(&bytes),
        "unsupported_class_version",
        "com/acme/Newer.class",
    );
    let java21 = ValidationPolicy {
        java_release: 21,
        ..Default::default()
    };
    assert_eq!(
        validate_jar(&bytes[..], &java21).unwrap().max_class_version,
        Some(65)
    );

    // In a nested library too.
    let mut lib = ZipBuilder::new();
    lib.add(Entry::deflated("org/lib/New.class", class(66)));
    let boot = jars::spring_boot_jar("com.acme.App", 0, &[("new-lib.jar".into(), lib.finish())]);
    assert_rejected(
        check(&boot),
        "unsupported_class_version",
        "BOOT-INF/lib/new-lib.jar!/org/lib/New.class",
    );

    // Multi-release: versions above the target are never loaded by it.
    let mut zip = ZipBuilder::new();
    zip.add(Entry::streamed(
        "META-INF/MANIFEST.MF",
        jars::manifest(&[("Main-Class", MAIN), ("Multi-Release", "true")]),
    ));
    zip.add(Entry::deflated("com/acme/Main.class", class(52)));
    zip.add(Entry::deflated(
        "META-INF/versions/21/com/acme/Main.class",
        class(65),
    ));
    let v = check(&zip.finish()).unwrap();
    assert_eq!(v.max_class_version, Some(52));
    assert!(
        v.findings
            .iter()
            .any(|f| f.kind == FindingKind::MultiRelease)
    );
    // Resources named .class without the magic are not classes.
    let mut zip = jar();
    zip.add(Entry::deflated("templates/page.class", b"<html>"));
    assert!(check(&zip.finish()).is_ok());
}

#[test]
fn notes_signed_jars() {
    let mut zip = jar();
    zip.add(Entry::deflated(
        "META-INF/ACME.SF",
        b"Signature-Version: 1.0\r\n\r\n",
    ));
    zip.add(Entry::deflated("META-INF/ACME.RSA", b"sig"));
    let v = check(&zip.finish()).unwrap();
    let f = v
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Signed)
        .expect("signed finding");
    assert_eq!(f.entry.as_deref(), Some("META-INF/ACME.SF"));
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["kind"], "signed");
}
