//! Writes the fuzz seed corpus (small archives, valid and malformed) into
//! the directory given, default `seeds/`.

use cameleer_build::testing::jars::{self, JAVA_17, Rng};
use cameleer_build::testing::{End, Entry, ZipBuilder};

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    std::fs::create_dir_all(&dir)?;
    let mut rng = Rng::new(3);
    let lib = jars::library_jar("org/lib", 2, 200, 5);
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("plain.jar", jars::plain_jar("com.acme.Main")),
        (
            "spring-boot.jar",
            jars::spring_boot_jar("com.acme.App", 1, &[("lib-1.0.jar".into(), lib.clone())]),
        ),
        ("library.jar", lib.clone()),
        // Sizes in the local headers: the one-shot inflater's entries.
        ("maven-library.jar", jars::maven_library_jar("org/mvn", 2, 200, 6)),
    ];
    let main_class = jars::class_file(JAVA_17, 120, &mut rng);
    let base = |zip: &mut ZipBuilder| {
        zip.add(Entry::deflated(
            "META-INF/MANIFEST.MF",
            jars::manifest(&[("Main-Class", "a.B")]),
        ));
        zip.add(Entry::stored("a/B.class", &main_class));
    };
    let mut prefixed = ZipBuilder::with_prefix(b"#!/bin/sh\nexec java -jar \"$0\" \"$@\"\n", false);
    base(&mut prefixed);
    seeds.push(("launch-script.jar", prefixed.finish()));
    let mut z64 = ZipBuilder::new();
    base(&mut z64);
    seeds.push((
        "zip64-end.jar",
        z64.finish_with(End {
            zip64: true,
            ..End::default()
        }),
    ));
    let mut nested2 = ZipBuilder::new();
    base(&mut nested2);
    let mut inner = ZipBuilder::new();
    inner.add(Entry::stored("deeper.jar", &lib));
    nested2.add(Entry::stored("BOOT-INF/lib/outer.jar", inner.finish()));
    seeds.push(("nested-depth-2.jar", nested2.finish()));
    let mut shared = ZipBuilder::new();
    base(&mut shared);
    let dup = shared.central[1].clone();
    shared.central.push(dup);
    seeds.push(("overlap.jar", shared.finish()));
    seeds.push(("empty.zip", ZipBuilder::new().finish()));
    for (name, bytes) in seeds {
        std::fs::write(format!("{dir}/{name}"), bytes)?;
    }
    Ok(())
}
