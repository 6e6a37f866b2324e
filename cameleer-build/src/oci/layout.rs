//! An OCI image layout on disk: `oci-layout`, `index.json`,
//! `blobs/sha256/…`, readable by `skopeo`, `crane`, `umoci`, `podman` and
//! (as a tar) `docker load`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndexBuilder, MediaType, OciLayoutBuilder};

use super::image::canonical_json;
use super::{BlobSource, OciError, OciImage};
use crate::{HashingWriter, Sha256Digest};

/// The annotation that names an image in a layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where a blob with `digest` lives in the layout at `dir`.
pub fn layout_blob_path(dir: impl AsRef<Path>, digest: &Sha256Digest) -> PathBuf {
    dir.as_ref()
        .join("blobs")
        .join("sha256")
        .join(digest.to_string())
}

/// Writes `image` as an OCI image layout in `dir` (created if missing):
/// every blob under `blobs/sha256/`, an `oci-layout` file and an
/// `index.json` that lists the image's manifest alone, named `ref_name`
/// (`org.opencontainers.image.ref.name`, e.g. a tag) when given.
///
/// It also writes a `manifest.json` in the `docker save` format (config
/// and layer blob paths, and `ref_name` as the repo tag when it is a
/// `name:tag` [`ImageRef`](crate::ImageRef)), as BuildKit's docker exporter
/// does: a tar of the directory then loads with `docker load` on Docker
/// versions before 25 too, which ignore `index.json`. Docker checks the
/// `diff_ids` as it loads and names the image by the config digest.
///
/// Blobs are written to a temporary name and renamed, and every layer blob
/// copied from its [`BlobSource`] is hashed on the way: one whose bytes no
/// longer match its digest or size fails with `source_changed`, and nothing
/// is left under its digest's name. A blob already present (same size) is
/// kept. The JSON files are canonical, so the same image gives the same
/// layout bytes.
pub fn write_oci_layout(
    dir: impl AsRef<Path>,
    image: &OciImage,
    ref_name: Option<&str>,
) -> Result<(), OciError> {
    let dir = dir.as_ref();
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)
        .map_err(|e| OciError::io(format!("creating {}", blobs.display()), e))?;

    for l in &image.layers {
        write_blob(dir, &l.layer.digest, l.layer.size, &l.source)?;
    }
    for json in [&image.config, &image.manifest] {
        let source = BlobSource::Memory(json.bytes.clone());
        write_blob(dir, &json.digest, json.size(), &source)?;
    }

    let mut manifest = image.manifest_descriptor()?;
    if let Some(name) = ref_name {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(OciError::InvalidImageConfig {
                field: "ref_name".into(),
                reason: "must be non-empty, without control characters",
            });
        }
        manifest.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_owned(),
            name.to_owned(),
        )])));
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest])
        .build()
        .map_err(OciError::spec)?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(OciError::spec)?;
    write_atomic(&dir.join("oci-layout"), &canonical_json(&layout)?)?;
    write_atomic(
        &dir.join("manifest.json"),
        &docker_manifest(image, ref_name)?,
    )?;
    write_atomic(&dir.join("index.json"), &canonical_json(&index)?)
}

/// `docker save`'s `manifest.json`: `[{"Config", "Layers", "RepoTags"}]`.
fn docker_manifest(image: &OciImage, ref_name: Option<&str>) -> Result<Vec<u8>, OciError> {
    let blob = |d: &Sha256Digest| format!("blobs/sha256/{d}");
    let tags: Vec<String> = ref_name
        .and_then(|r| r.parse::<crate::ImageRef>().ok())
        .filter(|r| r.tag().is_some() && r.digest().is_none())
        .map(|r| r.to_string())
        .into_iter()
        .collect();
    let entry = serde_json::json!([{
        "Config": blob(&image.config.digest),
        "Layers": image.layers.iter().map(|l| blob(&l.layer.digest)).collect::<Vec<_>>(),
        "RepoTags": tags,
    }]);
    canonical_json(&entry)
}

fn write_blob(
    dir: &Path,
    digest: &Sha256Digest,
    size: u64,
    source: &BlobSource,
) -> Result<(), OciError> {
    let dest = layout_blob_path(dir, digest);
    if fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size) {
        return Ok(());
    }
    let origin = match source {
        BlobSource::Memory(_) => "an in-memory blob".to_owned(),
        BlobSource::File(p) => p.to_string_lossy().into_owned(),
    };
    let tmp = dest.with_extension("partial");
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let result = (|| {
        let mut reader = source
            .open()
            .map_err(|e| super::layer::stat_error(Path::new(&origin), e))?;
        let file = File::create(&tmp).map_err(|e| OciError::io(ctx("creating"), e))?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
        io::copy(&mut reader, &mut out).map_err(|e| OciError::io(ctx("writing"), e))?;
        let written = out.written();
        let (out, actual) = out.finish();
        let file = out
            .into_inner()
            .map_err(|e| OciError::io(ctx("writing"), e.into_error()))?;
        file.sync_all()
            .map_err(|e| OciError::io(ctx("syncing"), e))?;
        if actual != *digest || written != size {
            return Err(OciError::SourceChanged {
                path: origin.clone(),
                reason: format!(
                    "the blob is now {written} bytes with sha256 {actual}, expected {size} bytes with sha256 {digest}"
                ),
            });
        }
        fs::rename(&tmp, &dest).map_err(|e| OciError::io(ctx("renaming"), e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let tmp = dest.with_extension("partial");
    let ctx = || format!("writing {}", dest.display());
    let mut f = File::create(&tmp).map_err(|e| OciError::io(ctx(), e))?;
    f.write_all(bytes).map_err(|e| OciError::io(ctx(), e))?;
    f.sync_all().map_err(|e| OciError::io(ctx(), e))?;
    fs::rename(&tmp, dest).map_err(|e| OciError::io(ctx(), e))
}
