//! Ready-made JARs: plain, Spring Boot, and a large fat JAR for benchmarks.

use super::{Entry, ZipBuilder};

/// Java 17's class-file major version.
pub const JAVA_17: u16 = 61;

/// A manifest with `Manifest-Version` and `attrs`, lines wrapped at 72
/// bytes the way `java.util.jar.Manifest` writes them.
pub fn manifest(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"Manifest-Version: 1.0\r\n".to_vec();
    for (k, v) in attrs {
        let line = format!("{k}: {v}");
        let mut bytes = line.as_bytes();
        let mut first = true;
        while !bytes.is_empty() {
            let room = if first { 72 } else { 71 };
            let n = bytes.len().min(room);
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(&bytes[..n]);
            out.extend_from_slice(b"\r\n");
            bytes = &bytes[n..];
            first = false;
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; any seed works.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const WORDS: &[&str] = &[
    "java/lang/Object",
    "java/lang/String",
    "Ljava/util/List;",
    "org/apache/camel/Exchange",
    "()V",
    "(Ljava/lang/String;)V",
    "<init>",
    "Code",
    "LineNumberTable",
    "StackMapTable",
    "getBody",
    "setHeader",
    "process",
    "configure",
    "from",
    "to",
    "RouteBuilder",
    "this",
    "LocalVariableTable",
    "SourceFile",
    "Exceptions",
    "RuntimeVisibleAnnotations",
];

/// A class-file-like blob: the real header (magic, minor 0, `major`), then
/// constant-pool-like text mixed with bytecode-like noise; it deflates
/// about 3:1, like real classes.
pub fn class_file(major: u16, len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    out.extend_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0]);
    out.extend_from_slice(&major.to_be_bytes());
    while out.len() < len {
        let r = rng.next_u64();
        if r.is_multiple_of(3) {
            out.extend_from_slice(&r.to_le_bytes()[..4]);
        } else {
            let w = WORDS[(r >> 8) as usize % WORDS.len()];
            out.push(1);
            out.extend_from_slice(&(w.len() as u16).to_be_bytes());
            out.extend_from_slice(w.as_bytes());
        }
    }
    out.truncate(len.max(8));
    out
}

/// A plain executable JAR: manifest with `Main-Class: main` and the class.
pub fn plain_jar(main: &str) -> Vec<u8> {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::streamed("META-INF/", b""));
    zip.add(Entry::streamed(
        "META-INF/MANIFEST.MF",
        manifest(&[("Main-Class", main)]),
    ));
    let mut rng = Rng::new(1);
    zip.add(Entry::streamed(
        format!("{}.class", main.replace('.', "/")),
        class_file(JAVA_17, 600, &mut rng),
    ));
    zip.finish()
}

/// A library JAR with `classes` class files of about `class_len` bytes,
/// written as `jar` and `java.util.zip.ZipOutputStream` write them: every
/// deflated entry followed by a data descriptor.
pub fn library_jar(package: &str, classes: usize, class_len: usize, seed: u64) -> Vec<u8> {
    library_jar_with(package, classes, class_len, seed, Entry::streamed)
}

/// [`library_jar`] as Maven's and Gradle's archivers write it (they write
/// to a file they can seek in): the sizes and CRC in every local header,
/// no data descriptors.
pub fn maven_library_jar(package: &str, classes: usize, class_len: usize, seed: u64) -> Vec<u8> {
    library_jar_with(package, classes, class_len, seed, Entry::deflated)
}

fn library_jar_with(
    package: &str,
    classes: usize,
    class_len: usize,
    seed: u64,
    entry: fn(String, Vec<u8>) -> Entry,
) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut zip = ZipBuilder::new();
    zip.add(entry(
        "META-INF/MANIFEST.MF".into(),
        manifest(&[("Created-By", "cameleer-tests")]),
    ));
    for i in 0..classes {
        let len = class_len / 2 + (rng.next_u64() as usize % class_len.max(1));
        zip.add(entry(
            format!("{package}/C{i}.class"),
            class_file(JAVA_17, len, &mut rng),
        ));
    }
    zip.finish()
}

/// The Spring Boot 3 launcher class name.
pub const SPRING_BOOT_LAUNCHER: &str = "org.springframework.boot.loader.launch.JarLauncher";

/// A Spring Boot fat JAR: the launcher, `start_class` under
/// `BOOT-INF/classes/`, `app_classes` more application classes, and `libs`
/// STORED under `BOOT-INF/lib/`.
pub fn spring_boot_jar(
    start_class: &str,
    app_classes: usize,
    libs: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let mut rng = Rng::new(7);
    let mut zip = ZipBuilder::new();
    zip.add(Entry::streamed(
        "META-INF/MANIFEST.MF",
        manifest(&[
            ("Main-Class", SPRING_BOOT_LAUNCHER),
            ("Start-Class", start_class),
            ("Spring-Boot-Version", "3.3.0"),
            ("Spring-Boot-Classes", "BOOT-INF/classes/"),
            ("Spring-Boot-Lib", "BOOT-INF/lib/"),
        ]),
    ));
    let launcher = format!("{}.class", SPRING_BOOT_LAUNCHER.replace('.', "/"));
    zip.add(Entry::streamed(
        launcher,
        class_file(JAVA_17, 4000, &mut rng),
    ));
    let start = format!("BOOT-INF/classes/{}.class", start_class.replace('.', "/"));
    zip.add(Entry::streamed(start, class_file(JAVA_17, 2000, &mut rng)));
    for i in 0..app_classes {
        let len = 2000 + rng.next_u64() as usize % 12000;
        zip.add(Entry::streamed(
            format!("BOOT-INF/classes/com/acme/app/C{i}.class"),
            class_file(JAVA_17, len, &mut rng),
        ));
    }
    for (name, bytes) in libs {
        zip.add(Entry::stored(format!("BOOT-INF/lib/{name}"), bytes));
    }
    zip.finish()
}

/// The benchmark's fat JAR: about 20 MB and 4,000 entries in all, Spring
/// Boot layout: 800 application classes deflated in the outer JAR (each
/// followed by a data descriptor) and 40 STORED libraries of 80 classes
/// each, written as Maven and Gradle write libraries ([`maven_library_jar`]).
pub fn benchmark_fat_jar() -> Vec<u8> {
    benchmark_fat_jar_with(maven_library_jar)
}

/// [`benchmark_fat_jar`] with libraries written as `jar` writes them
/// ([`library_jar`]): every entry of the upload followed by a data
/// descriptor, the layout the benchmark used before.
pub fn benchmark_fat_jar_streamed() -> Vec<u8> {
    benchmark_fat_jar_with(library_jar)
}

fn benchmark_fat_jar_with(library: fn(&str, usize, usize, u64) -> Vec<u8>) -> Vec<u8> {
    let libs: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("lib-{i}-1.0.jar"),
                library(&format!("org/lib{i}"), 80, 17_500, 100 + i),
            )
        })
        .collect();
    spring_boot_jar("com.acme.app.Application", 800, &libs)
}
