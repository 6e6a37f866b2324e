//! Daemonless, reproducible OCI images: layers, config and manifest as pure
//! functions of their inputs.
//!
//! An image is assembled in two steps:
//!
//! 1. each layer is a [`LayerBuilder`], written as a deterministic tar,
//!    gzipped with a fixed header and hashed as it streams
//!    ([`LayerBuilder::write_to`], [`write_file`](LayerBuilder::write_file),
//!    [`build_in_memory`](LayerBuilder::build_in_memory)), which gives a
//!    [`LayerBlob`]: its `diff_id`, digest, size and where the blob is;
//! 2. [`OciImage::assemble`] turns an [`ImageConfig`] and the layers into the
//!    image config and manifest, serialised canonically (compact JSON,
//!    sorted keys), so the manifest digest depends on nothing else.
//!
//! For Cameleer the layers are [`jre_layer`] (a `jlink` runtime under
//! [`IMAGE_JAVA_HOME`]), [`agent_layer`] and [`app_layer`], at the paths the
//! Dockerfile route uses ([`IMAGE_AGENT_PATH`], [`IMAGE_APP_PATH`]), so both
//! routes give the same file system. Changing only the application JAR
//! changes only the app layer, the config (its `diff_ids`) and the manifest.
//!
//! [`write_oci_layout`] writes the result as an OCI image layout directory
//! (with a `docker save` `manifest.json`, so a tar of it loads in Docker).
//! Pushing to a registry is not this crate's business (no network here).
//!
//! The types of the OCI image spec come from [`oci_spec::image`], re-exported
//! as [`spec`].
//!
//! # Examples
//!
//! ```
//! use cameleer_build::oci::{self, FileMode, ImageConfig, LayerBuilder, OciImage, Platform};
//!
//! let jre = tempfile::tempdir().unwrap();
//! std::fs::create_dir(jre.path().join("bin")).unwrap();
//! std::fs::write(jre.path().join("bin/java"), b"#!/bin/sh\n").unwrap();
//!
//! let layers = vec![
//!     oci::jre_layer(jre.path(), Default::default())?.build_in_memory()?,
//!     {
//!         let mut b = LayerBuilder::new();
//!         b.add_bytes(cameleer_build::IMAGE_APP_PATH, b"PK...".to_vec(), FileMode::Regular)?;
//!         b.build_in_memory()?
//!     },
//! ];
//! let mut config = ImageConfig::new(vec!["java".into(), "-jar".into(), "/app/app.jar".into()]);
//! config.platform = Platform::linux("amd64");
//! let image = OciImage::assemble(&config, layers)?;
//! println!("{}", image.manifest.digest.oci());
//! # Ok::<(), cameleer_build::oci::OciError>(())
//! ```
//!
//! # Errors
//!
//! [`OciError::code`] is stable:
//!
//! | code | why |
//! | --- | --- |
//! | `invalid_path`, `non_utf8_path` | a layer path with `..`, `.`, `//`, control characters, a `.wh.` name; a name on disk that is not UTF-8 |
//! | `duplicate_path`, `path_conflict` | the same file twice; a file under a file |
//! | `unsupported_file_type` | a socket, FIFO or device in a tree |
//! | `source_changed` | a file vanished or changed size before it was written; a blob no longer matches its digest |
//! | `size_mismatch`, `file_too_large` | a reader's length is not the declared size; 8 GiB or more |
//! | `invalid_layer_options`, `invalid_image_config` | options or config values out of range |
//! | `oci_spec_error`, `io_error` | the spec types refused a value; reading or writing failed |

mod blob;
mod error;
mod image;
mod layer;
mod layout;
mod path;
mod source;
mod tarball;
mod tree;

use std::path::Path;

pub use blob::{BlobSource, Layer, LayerBlob};
pub use error::OciError;
pub use image::{ImageConfig, JsonBlob, OciImage, Platform};
pub use layer::{FileMode, LayerBuilder, LayerOptions};
pub use layout::{ANNOTATION_REF_NAME, layout_blob_path, write_oci_layout};
pub use oci_spec::image as spec;

use crate::{IMAGE_AGENT_PATH, IMAGE_APP_PATH};

/// Media type of an image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzipped tar layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where the JRE goes in the image (`JAVA_HOME`).
pub const IMAGE_JAVA_HOME: &str = "/opt/java";

/// The JRE layer: the directory `jre_dir` (a `jlink` output) under
/// [`IMAGE_JAVA_HOME`]. See [`LayerBuilder::add_tree`].
pub fn jre_layer(
    jre_dir: impl AsRef<Path>,
    options: LayerOptions,
) -> Result<LayerBuilder<'static>, OciError> {
    let mut layer = LayerBuilder::with_options(options);
    layer.add_tree(IMAGE_JAVA_HOME, jre_dir)?;
    Ok(layer)
}

/// The agent layer: the JAR at `agent_jar` as
/// [`IMAGE_AGENT_PATH`], mode 0644.
pub fn agent_layer(
    agent_jar: impl AsRef<Path>,
    options: LayerOptions,
) -> Result<LayerBuilder<'static>, OciError> {
    let mut layer = LayerBuilder::with_options(options);
    layer.add_file(IMAGE_AGENT_PATH, agent_jar, FileMode::Regular)?;
    Ok(layer)
}

/// The application layer: the JAR at `app_jar` as
/// [`IMAGE_APP_PATH`], mode 0644, streamed when the layer is written.
pub fn app_layer(
    app_jar: impl AsRef<Path>,
    options: LayerOptions,
) -> Result<LayerBuilder<'static>, OciError> {
    let mut layer = LayerBuilder::with_options(options);
    layer.add_file(IMAGE_APP_PATH, app_jar, FileMode::Regular)?;
    Ok(layer)
}
