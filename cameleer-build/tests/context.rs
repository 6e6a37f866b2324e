//! The build context is deterministic, streamed, and its digest is the
//! digest of its bytes; the async adapters behave like the sync core.

use std::io::Read;

use cameleer_build::testing::jars;
use cameleer_build::{
    BuildContext, ContextFile, DockerfileSpec, Sha256Digest, ValidationPolicy, validate_jar_async,
};
use futures::StreamExt;

fn dockerfile() -> String {
    DockerfileSpec::new("eclipse-temurin:17-jre".parse().unwrap())
        .render()
        .unwrap()
}

fn context<'a>(app: &'a [u8], agent: &'a [u8]) -> BuildContext<&'a [u8], &'a [u8]> {
    BuildContext {
        dockerfile: dockerfile(),
        agent: ContextFile::new(agent, agent.len() as u64),
        app: ContextFile::new(app, app.len() as u64),
    }
}

#[test]
fn same_inputs_same_bytes_and_the_digest_is_of_those_bytes() {
    let (app, agent) = (jars::plain_jar("com.acme.Main"), b"agent bytes".to_vec());
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let d1 = context(&app, &agent).write_to(&mut one).unwrap();
    let d2 = context(&app, &agent).write_to(&mut two).unwrap();
    assert_eq!(Sha256Digest::of(&one), Sha256Digest::of(&two));
    assert_eq!(one, two);
    assert_eq!(d1, Sha256Digest::of(&one));
    assert_eq!(d1, d2);
    assert_eq!(context(&app, &agent).digest().unwrap(), d1);
    // Any input change changes the key.
    let other = context(&app, b"agent bytes 2").digest().unwrap();
    assert_ne!(other, d1);
}

#[test]
fn entries_are_sorted_and_normalised() {
    let (app, agent) = (vec![7u8; 1000], vec![9u8; 700]);
    let mut tar_bytes = Vec::new();
    context(&app, &agent).write_to(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let h = e.header().clone();
        assert_eq!(
            (
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap()
            ),
            (0o644, 0, 0, 0)
        );
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        seen.push((e.path().unwrap().to_string_lossy().into_owned(), data));
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Dockerfile", "app.jar", "cameleer-agent.jar"]);
    assert_eq!(seen[0].1, dockerfile().into_bytes());
    assert_eq!((&seen[1].1, &seen[2].1), (&app, &agent));
}

#[test]
fn refuses_readers_that_disagree_with_their_size() {
    let app = [1u8; 100];
    let short = BuildContext {
        dockerfile: dockerfile(),
        agent: ContextFile::new(&b"a"[..], 1),
        app: ContextFile::new(&app[..], 101),
    };
    assert!(short.digest().unwrap_err().to_string().contains("short"));
    let long = BuildContext {
        dockerfile: dockerfile(),
        agent: ContextFile::new(&b"a"[..], 1),
        app: ContextFile::new(&app[..], 99),
    };
    assert!(long.digest().unwrap_err().to_string().contains("longer"));
}

#[test]
fn streams_a_large_jar_without_holding_it() {
    // A reader that makes 16 MiB on the fly: the tar streams through a
    // small buffer (the hashing sink keeps nothing).
    struct Zeros(u64);
    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0 as usize);
            buf[..n].fill(0);
            self.0 -= n as u64;
            Ok(n)
        }
    }
    let size = 16 << 20;
    let ctx = BuildContext {
        dockerfile: dockerfile(),
        agent: ContextFile::new(&b"agent"[..], 5),
        app: ContextFile::new(Zeros(size), size),
    };
    let mut counted = cameleer_build::HashingWriter::new(std::io::sink());
    let digest = ctx.write_to(&mut counted).unwrap();
    let (written, (_, again)) = (counted.written(), counted.finish());
    assert_eq!(digest, again);
    assert!(written > size && written < size + 8192);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_yields_the_same_bytes_and_digest() {
    let app = jars::plain_jar("com.acme.Main").repeat(200);
    let agent = vec![5u8; 300_000];
    let mut expected = Vec::new();
    let expected_digest = context(&app, &agent).write_to(&mut expected).unwrap();
    let ctx = BuildContext {
        dockerfile: dockerfile(),
        agent: ContextFile::new(std::io::Cursor::new(agent.clone()), agent.len() as u64),
        app: ContextFile::new(std::io::Cursor::new(app.clone()), app.len() as u64),
    };
    let mut s = ctx.into_stream();
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = s.stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 64 << 10);
        chunks += 1;
        got.extend_from_slice(&chunk);
    }
    assert!(chunks > 4, "streamed in chunks");
    assert_eq!(got, expected);
    assert_eq!(s.digest.await.unwrap(), expected_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_reports_errors_in_band() {
    let ctx = BuildContext {
        dockerfile: dockerfile(),
        agent: ContextFile::new(std::io::Cursor::new(vec![1u8; 10]), 20),
        app: ContextFile::new(std::io::Cursor::new(vec![1u8; 10]), 10),
    };
    let s = ctx.into_stream();
    let items: Vec<_> = s.stream.collect().await;
    assert!(items.last().unwrap().is_err());
    assert!(s.digest.await.is_err(), "no digest for a failed context");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_validation_matches_sync() {
    let lib = jars::library_jar("org/l", 10, 2000, 3);
    let bytes = jars::spring_boot_jar("com.acme.App", 20, &[("l.jar".into(), lib)]);
    let policy = ValidationPolicy::default();
    let sync = cameleer_build::validate_jar(&bytes[..], &policy).unwrap();
    let via_async = validate_jar_async(&bytes[..], &policy).await.unwrap();
    assert_eq!(sync, via_async);
    let err = validate_jar_async(&bytes[..bytes.len() - 3], &policy)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "truncated");
    // A reader that fails.
    struct Broken;
    impl tokio::io::AsyncRead for Broken {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("connection reset")))
        }
    }
    let err = validate_jar_async(Broken, &policy).await.unwrap_err();
    assert_eq!(err.code(), "io_error");
    assert!(err.to_string().contains("connection reset"));
}
