//! The JRE base image every application image starts from.
//!
//! Either the operator names one ([`BaseImageConfig::Reference`]): we use it
//! when the engine has it, pull it otherwise, and fail with
//! `base_image_unavailable` when neither works. Or we build one from the
//! machine's JDK ([`BaseImageConfig::Jlink`], the default): `jlink` a runtime
//! with [`DEFAULT_MODULES`], add the host's shared libraries it links (found
//! with `ldd`), a non-root user, `/tmp`, CA certificates, and load the tree
//! with the engine's import API (`docker import`). No registry is involved.
//!
//! The built image is tagged `cameleer/jre:<java major>-<key>`, where the key
//! is a SHA-256 over everything it is made of: the JDK's `release` file, the
//! module list, the `jlink` flags, the content of every host library the JDK
//! links, the CA bundle and this recipe's version. An image with that tag is
//! the cache: it is built once per machine and reused by every later call,
//! process or test run. Concurrent calls are safe: one process builds at a
//! time (a process-wide lock plus a lock file in the cache directory), and the
//! tag is only ever moved onto a complete image (import under a temporary
//! tag, then tag).
//!
//! The image has no shell: a Dockerfile built on it can `COPY`, not `RUN`.
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_runtime_docker::base_image::{self, BaseImageConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let docker = cameleer_runtime_docker::connect::connect().await?;
//! let jre = base_image::ensure_base_image(&docker, &BaseImageConfig::default()).await?;
//! println!("FROM {}  # {}", jre.reference, jre.id);
//! # Ok(()) }
//! ```

mod busybox;
mod jre;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use cameleer_build::ImageRef;
use cameleer_build::java::jre::JreError;
use cameleer_build::java::{self, JdkError};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use busybox::BusyboxPlan;

/// The modules of the locally built JRE, with why each is there: see
/// [`cameleer_build::java::jre::DEFAULT_MODULES`].
pub use cameleer_build::java::jre::DEFAULT_MODULES;

/// Where the JRE lives inside the image (`JAVA_HOME`).
pub const JAVA_HOME_IN_IMAGE: &str = "/opt/java";

/// The uid applications run as: not root, and above the ranges distributions
/// hand out, so it matches no host account.
pub const RUNTIME_UID: u32 = 10001;

/// The gid applications run as.
pub const RUNTIME_GID: u32 = 10001;

/// The name of [`RUNTIME_UID`] in the image's `/etc/passwd`.
pub const RUNTIME_USER: &str = "cameleer";

/// The repository locally built JREs are tagged in.
pub const DEFAULT_JRE_REPOSITORY: &str = "cameleer/jre";

/// The repository the busybox test image is tagged in.
pub const BUSYBOX_REPOSITORY: &str = "cameleer/busybox";

/// Which base image application images start from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseImageConfig {
    /// An image the operator provides (with a JRE at `JAVA_HOME`); pulled
    /// when the engine does not have it.
    Reference(ImageRef),
    /// A JRE built here from the machine's JDK.
    Jlink(JlinkRecipe),
}

impl Default for BaseImageConfig {
    fn default() -> Self {
        BaseImageConfig::Jlink(JlinkRecipe::default())
    }
}

/// How to build the local JRE image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JlinkRecipe {
    /// The JDK to link from; `None` finds it with [`Jdk::locate`](cameleer_build::java::Jdk::locate).
    pub jdk_home: Option<PathBuf>,
    /// The modules to include (their dependencies come along).
    pub modules: Vec<String>,
    /// The repository to tag the image in.
    pub repository: String,
}

impl Default for JlinkRecipe {
    fn default() -> Self {
        JlinkRecipe {
            jdk_home: None,
            modules: DEFAULT_MODULES.iter().map(|m| m.to_string()).collect(),
            repository: DEFAULT_JRE_REPOSITORY.to_string(),
        }
    }
}

/// A base image the engine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The reference to build `FROM`.
    pub reference: ImageRef,
    /// The engine's image id (`sha256:…`).
    pub id: String,
    /// How this call came by it.
    pub origin: BaseImageOrigin,
}

/// How [`ensure_base_image`] came by the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseImageOrigin {
    /// The engine already had it.
    Present,
    /// It was pulled from its registry.
    Pulled,
    /// It was built and imported by this call.
    Built,
}

/// Why no base image could be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseImageError {
    /// The configured image is not on the engine and could not be pulled.
    #[error(
        "base image {image} is not available: the engine does not have it and pulling failed: {source}"
    )]
    Unavailable {
        /// The configured reference.
        image: String,
        /// The pull error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The recipe is invalid (an unknown module, a bad repository name).
    #[error("invalid base image configuration {field}: {reason}")]
    InvalidConfig {
        /// The offending field, e.g. `modules[3]`.
        field: String,
        /// Why.
        reason: String,
    },
    /// The JDK could not be found or `jlink` failed.
    #[error(transparent)]
    Jdk(#[from] JdkError),
    /// A library the JVM needs is not installed on this host.
    #[error("shared library {library} needed by {needed_by} is not installed on this host")]
    MissingLibrary {
        /// The library's name.
        library: String,
        /// The binary that needs it.
        needed_by: String,
    },
    /// No busybox binary on this host (Debian: `apt-get install busybox-static`).
    #[error("no busybox binary found (looked at {looked}); install busybox-static")]
    BusyboxNotFound {
        /// The paths looked at.
        looked: String,
    },
    /// The engine rejected the imported root filesystem.
    #[error("importing image {image} failed: {message}")]
    Import {
        /// The image being imported.
        image: String,
        /// The engine's error.
        message: String,
    },
    /// Another engine call failed.
    #[error("Docker Engine call failed while {operation}: {source}")]
    Docker {
        /// What was being done.
        operation: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Reading host files or writing the image tar failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl BaseImageError {
    /// A stable, machine-readable code for this error (for [`Jdk`](BaseImageError::Jdk),
    /// the JDK error's own code).
    pub fn code(&self) -> &'static str {
        match self {
            BaseImageError::Unavailable { .. } => "base_image_unavailable",
            BaseImageError::InvalidConfig { .. } => "base_image_config_invalid",
            BaseImageError::Jdk(e) => e.code(),
            BaseImageError::MissingLibrary { .. } => "base_image_library_missing",
            BaseImageError::BusyboxNotFound { .. } => "busybox_not_found",
            BaseImageError::Import { .. } => "base_image_import_failed",
            BaseImageError::Docker { .. } => "docker_api_error",
            BaseImageError::Io { .. } => "base_image_io",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> BaseImageError {
        let context = context.into();
        move |source| BaseImageError::Io { context, source }
    }

    fn docker(
        operation: impl Into<String>,
    ) -> impl FnOnce(bollard::errors::Error) -> BaseImageError {
        let operation = operation.into();
        move |source| BaseImageError::Docker { operation, source }
    }
}

/// The engine-free part of the build keeps its codes: the same variants.
impl From<JreError> for BaseImageError {
    fn from(e: JreError) -> Self {
        match e {
            JreError::InvalidConfig { field, reason } => {
                BaseImageError::InvalidConfig { field, reason }
            }
            JreError::Jdk(e) => BaseImageError::Jdk(e),
            JreError::MissingLibrary { library, needed_by } => {
                BaseImageError::MissingLibrary { library, needed_by }
            }
            JreError::Io { context, source } => BaseImageError::Io { context, source },
            other => BaseImageError::Io {
                context: "writing the base image".into(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

/// One ensure at a time per process: the first builds, the rest find the tag.
static ENSURE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes sure the engine has the configured base image and returns it:
/// present, pulled, or built from the local JDK (see the module docs).
pub async fn ensure_base_image(
    docker: &Docker,
    config: &BaseImageConfig,
) -> Result<BaseImage, BaseImageError> {
    match config {
        BaseImageConfig::Reference(reference) => ensure_reference(docker, reference).await,
        BaseImageConfig::Jlink(recipe) => {
            let plan = {
                let recipe = recipe.clone();
                blocking(move || jre::plan(&recipe)).await??
            };
            let reference = plan.reference.clone();
            ensure_built(docker, &reference, plan.changes(), move |tar| {
                plan.write_rootfs(tar)
            })
            .await
        }
    }
}

/// Makes sure the engine has `cameleer/busybox:<key>`, a tiny image of the
/// host's busybox (`/bin/sh` and the usual applets), for test containers
/// that need a shell or network tools. Built like the JRE image.
pub async fn ensure_busybox_image(docker: &Docker) -> Result<BaseImage, BaseImageError> {
    let plan = blocking(BusyboxPlan::new).await??;
    let reference = plan.reference.clone();
    ensure_built(docker, &reference, plan.changes(), move |tar| {
        plan.write_rootfs(tar)
    })
    .await
}

async fn ensure_reference(
    docker: &Docker,
    reference: &ImageRef,
) -> Result<BaseImage, BaseImageError> {
    let name = reference.to_string();
    let _guard = ENSURE_LOCK.lock().await;
    if let Some(id) = image_id(docker, &name).await? {
        return Ok(BaseImage {
            reference: reference.clone(),
            id,
            origin: BaseImageOrigin::Present,
        });
    }
    // Pull exactly the tag or digest named; without either, `latest` (an
    // empty tag would pull every tag of the repository).
    let tag = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.oci(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => "latest".to_string(),
    };
    let options = CreateImageOptionsBuilder::new()
        .from_image(&reference.name())
        .tag(&tag)
        .build();
    let mut pull = docker.create_image(Some(options), None, None);
    while let Some(progress) = pull.next().await {
        if let Err(source) = progress {
            return Err(BaseImageError::Unavailable {
                image: name,
                source,
            });
        }
    }
    let id = image_id(docker, &name)
        .await?
        .ok_or_else(|| BaseImageError::Import {
            image: name.clone(),
            message: "the pull finished but the engine does not list the image".into(),
        })?;
    Ok(BaseImage {
        reference: reference.clone(),
        id,
        origin: BaseImageOrigin::Pulled,
    })
}

/// The engine's id for `name`, or `None` when it has no such image.
async fn image_id(docker: &Docker, name: &str) -> Result<Option<String>, BaseImageError> {
    match docker.inspect_image(name).await {
        Ok(inspect) => Ok(inspect.id),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(BaseImageError::docker(format!("inspecting image {name}"))(
            source,
        )),
    }
}

/// Returns the image tagged `reference`, building and importing it first
/// when absent. Safe against concurrent callers in this and other processes.
async fn ensure_built<F>(
    docker: &Docker,
    reference: &ImageRef,
    changes: Vec<String>,
    write_rootfs: F,
) -> Result<BaseImage, BaseImageError>
where
    F: FnOnce(&Path) -> Result<(), BaseImageError> + Send + 'static,
{
    let name = reference.to_string();
    let present = |id| BaseImage {
        reference: reference.clone(),
        id,
        origin: BaseImageOrigin::Present,
    };
    if let Some(id) = image_id(docker, &name).await? {
        return Ok(present(id));
    }
    let _guard = ENSURE_LOCK.lock().await;
    let cache = blocking(java::cache_dir).await??;
    let lock_path = cache
        .join("locks")
        .join(format!("{}.lock", name.replace(['/', ':'], "_")));
    // Held until the end of this function; another process building the same
    // image waits here and then finds the tag.
    let _file_lock = blocking(move || lock_file(&lock_path)).await??;
    if let Some(id) = image_id(docker, &name).await? {
        return Ok(present(id));
    }
    // A build of this image that died between import and tag left its
    // temporary tag behind; under the lock no build of it is in flight.
    let final_tag = reference.tag().unwrap_or("latest");
    let temp_prefix = format!("tmp-{final_tag}-");
    remove_stale_temp_tags(docker, &format!("{}:{temp_prefix}*", reference.name())).await;

    let started = std::time::Instant::now();
    let scratch = blocking({
        let cache = cache.clone();
        move || java::scratch_dir(&cache)
    })
    .await??;
    let tar_path = scratch.path().join("rootfs.tar");
    {
        let tar_path = tar_path.clone();
        blocking(move || write_rootfs(&tar_path)).await??;
    }
    let temp_tag = format!(
        "{temp_prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    import(
        docker,
        &tar_path,
        reference.repository(),
        &temp_tag,
        changes,
        &name,
    )
    .await?;
    let temp_name = format!("{}:{temp_tag}", reference.name());
    // Someone else (another process on the same engine) may have won the
    // race; their image is as good as ours.
    if image_id(docker, &name).await?.is_none() {
        let options = TagImageOptionsBuilder::new()
            .repo(&reference.name())
            .tag(final_tag)
            .build();
        docker
            .tag_image(&temp_name, Some(options))
            .await
            .map_err(BaseImageError::docker(format!(
                "tagging {temp_name} as {name}"
            )))?;
    }
    // Drops only the temporary tag when the final tag points at our image,
    // and our whole image when it lost the race.
    let remove = RemoveImageOptionsBuilder::new().build();
    if let Err(e) = docker.remove_image(&temp_name, Some(remove), None).await {
        tracing::warn!(image = %temp_name, error = %e, "could not remove the temporary tag");
    }
    let id = image_id(docker, &name)
        .await?
        .ok_or_else(|| BaseImageError::Import {
            image: name.clone(),
            message: "the image vanished right after it was tagged".into(),
        })?;
    tracing::info!(image = %name, %id, elapsed = ?started.elapsed(), "built base image");
    Ok(BaseImage {
        reference: reference.clone(),
        id,
        origin: BaseImageOrigin::Built,
    })
}

/// Removes the tags matching `pattern` (a `repository:tag` glob); failures
/// are only logged, as a leftover tag harms nothing but disk space.
async fn remove_stale_temp_tags(docker: &Docker, pattern: &str) {
    let filters = HashMap::from([("reference", vec![pattern.to_string()])]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    let images = match docker.list_images(Some(options)).await {
        Ok(images) => images,
        Err(e) => {
            tracing::warn!(pattern, error = %e, "could not list stale temporary tags");
            return;
        }
    };
    let prefix = pattern.trim_end_matches('*');
    for tag in images
        .iter()
        .flat_map(|i| &i.repo_tags)
        .filter(|t| t.starts_with(prefix))
    {
        let options = RemoveImageOptionsBuilder::new().build();
        match docker.remove_image(tag, Some(options), None).await {
            Ok(_) => tracing::info!(image = %tag, "removed a stale temporary tag"),
            Err(e) => {
                tracing::warn!(image = %tag, error = %e, "could not remove a stale temporary tag")
            }
        }
    }
}

/// `docker import`: streams the tar at `tar_path` to the engine as a new
/// image `repository:tag` with the given Dockerfile `changes`.
async fn import(
    docker: &Docker,
    tar_path: &Path,
    repository: &str,
    tag: &str,
    changes: Vec<String>,
    image: &str,
) -> Result<(), BaseImageError> {
    let file = tokio::fs::File::open(tar_path)
        .await
        .map_err(BaseImageError::io(format!(
            "opening {}",
            tar_path.display()
        )))?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repository)
        .tag(tag)
        .changes(changes)
        .message(&format!("cameleer: {image}"))
        .build();
    let mut progress = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = progress.next().await {
        item.map_err(|e| BaseImageError::Import {
            image: image.to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

fn image_ref(repository: &str, tag: &str) -> Result<ImageRef, BaseImageError> {
    ImageRef::new(None, repository, Some(tag), None).map_err(|e| BaseImageError::InvalidConfig {
        field: "repository".into(),
        reason: e.to_string(),
    })
}

/// Takes an exclusive lock on `path` (created if needed), blocking until
/// other processes release it; released when the file is dropped.
fn lock_file(path: &Path) -> Result<std::fs::File, BaseImageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(BaseImageError::io(format!("creating {}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(BaseImageError::io(format!("opening {}", path.display())))?;
    file.lock()
        .map_err(BaseImageError::io(format!("locking {}", path.display())))?;
    Ok(file)
}

fn hash_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Runs blocking work (processes, file trees) off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BaseImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BaseImageError::Io {
            context: "a blocking task of the base image build".into(),
            source: io::Error::other(e.to_string()),
        })
}
