//! Pushes against a real registry (Debian's `docker-registry`, distribution
//! 2.8) started on loopback by each test: plain HTTP; blobs the repository
//! has are skipped; base and agent layers are mounted across repositories
//! so a new version uploads only its app layer; htpasswd over TLS with a
//! CA made for the test; bearer tokens from a token server; and the typed
//! errors of a wrong password, missing credentials and an untrusted or
//! absent TLS.

mod support;

use std::sync::{Arc, Mutex};

use cameleer_registry::testing::TestRegistry;
use cameleer_registry::{
    BlobOutcome, Credentials, PushEvent, PushOptions, RegistryClient, RegistryConfig,
};
use support::token::TokenServer;

fn client(registry: &TestRegistry) -> RegistryClient {
    RegistryClient::new(registry.client_config().unwrap()).unwrap()
}

/// Every blob the manifest names is in the repository, and the manifest
/// under `reference` is ours byte for byte.
async fn assert_complete(
    client: &RegistryClient,
    repo: &str,
    reference: &str,
    image: &cameleer_build::oci::OciImage,
) {
    let (media_type, bytes) = client
        .manifest(repo, reference)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no manifest {repo}:{reference}"));
    assert_eq!(media_type, cameleer_build::oci::MEDIA_TYPE_MANIFEST);
    assert_eq!(bytes, image.manifest.bytes, "the registry keeps our bytes");
    for digest in image
        .layers
        .iter()
        .map(|l| l.layer.digest)
        .chain([image.config.digest])
    {
        assert!(
            client.blob_exists(repo, &digest).await.unwrap(),
            "{repo} lacks {digest}"
        );
    }
    assert_eq!(
        client.manifest_digest(repo, reference).await.unwrap(),
        Some(image.manifest.digest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_a_plain_loopback_registry_and_reads_back_the_same_bytes() {
    let registry = TestRegistry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 10, 2 << 20);
    let client = client(&registry);
    client.check().await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let options = PushOptions {
        progress: Some({
            let events = events.clone();
            Arc::new(move |e: &PushEvent| events.lock().unwrap().push(e.clone()))
        }),
        ..PushOptions::default()
    };
    let report = client
        .push_image("acme/orders", &image, &["v1", "dev-v1"], &options)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest.digest);
    assert_eq!(report.counts(), (0, 0, 4), "{report:?}");
    let total: u64 = image.layers.iter().map(|l| l.layer.size).sum::<u64>() + image.config.size();
    assert_eq!(report.bytes_uploaded, total);
    assert_complete(&client, "acme/orders", "v1", &image).await;
    assert_complete(&client, "acme/orders", "dev-v1", &image).await;
    assert_complete(&client, "acme/orders", &image.manifest.digest.oci(), &image).await;
    let events = events.lock().unwrap();
    let app = image.layers[2].layer;
    assert!(events.contains(&PushEvent::Uploaded {
        digest: app.digest,
        size: app.size
    }));
    let sent: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            PushEvent::Sent { digest, sent, .. } if *digest == app.digest => Some(*sent),
            _ => None,
        })
        .collect();
    assert!(sent.len() > 2, "the app layer went out in chunks: {sent:?}");
    assert_eq!(sent.last(), Some(&app.size));
    assert!(sent.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_push_of_the_same_image_uploads_nothing() {
    let registry = TestRegistry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 11, 1 << 20);
    let client = client(&registry);
    let options = PushOptions::default();
    client
        .push_image("acme/orders", &image, &["v1"], &options)
        .await
        .unwrap();
    let again = client
        .push_image("acme/orders", &image, &["v2"], &options)
        .await
        .unwrap();
    assert_eq!(again.counts(), (4, 0, 0), "{again:?}");
    assert_eq!(again.bytes_uploaded, 0);
    assert!(again.blobs.iter().all(|b| b.2 == BlobOutcome::Skipped));
    assert_complete(&client, "acme/orders", "v2", &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_in_another_repository_mounts_base_and_agent_and_uploads_only_its_app_layer()
{
    let registry = TestRegistry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&registry);
    let base = support::image(dir.path(), 20, 64 << 10);
    client
        .push_image("cameleer/base", &base, &["jre"], &PushOptions::default())
        .await
        .unwrap();
    let before = registry.stored_blobs();
    let v2 = support::image(dir.path(), 21, 3 << 20);
    let options = PushOptions {
        mount_from: Some("cameleer/base".into()),
        ..PushOptions::default()
    };
    let report = client
        .push_image("cameleer/acme/orders", &v2, &["v2"], &options)
        .await
        .unwrap();
    let outcome = |i: usize| report.blobs[i].2;
    assert_eq!(outcome(0), BlobOutcome::Mounted, "base layer: {report:?}");
    assert_eq!(outcome(1), BlobOutcome::Mounted, "agent layer");
    assert_eq!(outcome(2), BlobOutcome::Uploaded, "app layer");
    assert_eq!(outcome(3), BlobOutcome::Uploaded, "config");
    assert_eq!(
        report.bytes_uploaded,
        v2.layers[2].layer.size + v2.config.size(),
        "only the app layer and the config are uploaded"
    );
    // On the server: exactly three new blobs, the app layer, the config
    // and the manifest (distribution keeps manifests as blobs too).
    let after = registry.stored_blobs();
    let mut new: Vec<String> = after.into_iter().filter(|b| !before.contains(b)).collect();
    new.sort();
    let mut expected = vec![
        v2.layers[2].layer.digest.oci(),
        v2.config.digest.oci(),
        v2.manifest.digest.oci(),
    ];
    expected.sort();
    assert_eq!(new, expected);
    assert_complete(&client, "cameleer/acme/orders", "v2", &v2).await;

    // A blob the source repository lacks cannot be mounted: the session
    // the registry opens instead is used for the upload.
    let other = support::image(dir.path(), 22, 256 << 10);
    let report = client
        .push_image(
            "cameleer/acme/billing",
            &other,
            &["v1"],
            &PushOptions {
                mount_from: Some("cameleer/nothing-here".into()),
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.counts(), (0, 0, 4), "{report:?}");
    assert_complete(&client, "cameleer/acme/billing", "v1", &other).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_over_tls_with_a_ca_made_for_the_test() {
    let registry = TestRegistry::builder()
        .htpasswd("ci", "correct horse")
        .tls()
        .start()
        .unwrap();
    assert!(registry.url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 30, 512 << 10);
    let client = client(&registry);
    client.check().await.unwrap();
    client
        .push_image("acme/orders", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap();
    assert_complete(&client, "acme/orders", "v1", &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_none_is_a_typed_error_and_pushes_nothing() {
    let registry = TestRegistry::builder()
        .htpasswd("ci", "correct horse")
        .tls()
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 31, 64 << 10);
    let ca = &registry.ca().unwrap().ca_pem;
    let base = RegistryConfig::new(&registry.url())
        .unwrap()
        .with_ca_file(ca)
        .unwrap();

    let wrong = RegistryClient::new(
        base.clone()
            .with_credentials(Credentials::new("ci", "battery staple").unwrap()),
    )
    .unwrap();
    let err = wrong.check().await.unwrap_err();
    assert_eq!(err.code(), "auth_failed", "{err}");
    let err = wrong
        .push_image("acme/orders", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_failed", "{err}");
    assert!(err.to_string().contains(&registry.host()), "{err}");

    let anonymous = RegistryClient::new(base).unwrap();
    let err = anonymous
        .push_image("acme/orders", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_required", "{err}");
    assert!(err.to_string().contains("Basic"), "{err}");

    assert!(registry.stored_blobs().is_empty(), "nothing was stored");
    let good = client(&registry);
    assert_eq!(
        good.manifest_digest("acme/orders", "v1").await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_or_no_tls_is_tls_error() {
    let registry = TestRegistry::builder().tls().start().unwrap();
    // The system roots do not know the test CA.
    let untrusted = RegistryClient::new(RegistryConfig::new(&registry.url()).unwrap()).unwrap();
    let err = untrusted.check().await.unwrap_err();
    assert_eq!(err.code(), "tls_error", "{err}");
    assert!(err.to_string().contains("not trusted"), "{err}");
    // Another CA does not vouch for it either.
    let dir = tempfile::tempdir().unwrap();
    let other = cameleer_registry::testing::TestCa::new(dir.path()).unwrap();
    let wrong_ca = RegistryClient::new(
        RegistryConfig::new(&registry.url())
            .unwrap()
            .with_ca_file(&other.ca_pem)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(wrong_ca.check().await.unwrap_err().code(), "tls_error");
    // https:// to a registry that speaks plain HTTP.
    let plain = TestRegistry::start().unwrap();
    let https =
        RegistryClient::new(RegistryConfig::new(&format!("https://{}", plain.host())).unwrap())
            .unwrap();
    let err = https.check().await.unwrap_err();
    assert_eq!(err.code(), "tls_error", "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_from_a_token_server_cover_the_push_and_the_mount() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(dir.path(), "ci", "s3cret").await;
    let registry = TestRegistry::builder()
        .token(tokens.auth())
        .start()
        .unwrap();
    let config = || RegistryConfig::new(&registry.url()).unwrap();
    let client =
        RegistryClient::new(config().with_credentials(Credentials::new("ci", "s3cret").unwrap()))
            .unwrap();
    client.check().await.unwrap();
    let base = support::image(dir.path(), 40, 64 << 10);
    client
        .push_image("cameleer/base", &base, &["jre"], &PushOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    let v2 = support::image(dir.path(), 41, 1 << 20);
    let report = client
        .push_image(
            "cameleer/acme/orders",
            &v2,
            &["v2"],
            &PushOptions {
                mount_from: Some("cameleer/base".into()),
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.counts(), (0, 2, 2), "{report:?}");
    assert_complete(&client, "cameleer/acme/orders", "v2", &v2).await;
    // Tokens are cached per scope set: a handful, not one per request.
    let issued = tokens.issued();
    assert!((2..=8).contains(&issued), "{issued} tokens");

    let wrong =
        RegistryClient::new(config().with_credentials(Credentials::new("ci", "guess").unwrap()))
            .unwrap();
    let err = wrong
        .push_image(
            "cameleer/acme/orders",
            &v2,
            &["v3"],
            &PushOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_failed", "{err}");
    assert!(err.to_string().contains("token server"), "{err}");
    assert!(tokens.refused() >= 1);
    let anonymous = RegistryClient::new(config()).unwrap();
    let err = anonymous.check().await.unwrap_err();
    assert_eq!(err.code(), "auth_required", "{err}");
    assert_eq!(
        client
            .manifest_digest("cameleer/acme/orders", "v3")
            .await
            .unwrap(),
        None
    );
}
