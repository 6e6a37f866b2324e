//! The JRE image: [`cameleer_build::java::jre`]'s root file system, tagged
//! by its content key, with the Dockerfile changes `docker import` applies.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cameleer_build::ImageRef;
use cameleer_build::java::jre::{JrePlan as Runtime, JreRecipe};

use super::{BaseImageError, JAVA_HOME_IN_IMAGE, JlinkRecipe, RUNTIME_GID, RUNTIME_UID, image_ref};

/// The plan for `recipe` (the content key is computed once per process,
/// see [`Runtime::cached`]) and the reference it is tagged with.
pub(super) fn plan(recipe: &JlinkRecipe) -> Result<JrePlan, BaseImageError> {
    let runtime = Runtime::cached(&JreRecipe {
        jdk_home: recipe.jdk_home.clone(),
        modules: recipe.modules.clone(),
    })?;
    let reference = image_ref(
        &recipe.repository,
        &format!("{}-{}", runtime.jdk().major(), &runtime.key()[..12]),
    )?;
    Ok(JrePlan { runtime, reference })
}

/// What goes into the JRE image, and the content key that names it.
pub(super) struct JrePlan {
    runtime: Arc<Runtime>,
    pub(super) reference: ImageRef,
}

impl JrePlan {
    pub(super) fn changes(&self) -> Vec<String> {
        vec![
            format!("ENV JAVA_HOME={JAVA_HOME_IN_IMAGE}"),
            format!("ENV PATH={JAVA_HOME_IN_IMAGE}/bin:/usr/local/bin:/usr/bin:/bin"),
            // glibc ≥ 2.35 has C.UTF-8 built in; without it the JVM would
            // default to ASCII for file names and console output.
            "ENV LANG=C.UTF-8".to_string(),
            format!("USER {RUNTIME_UID}:{RUNTIME_GID}"),
            format!("CMD [\"{JAVA_HOME_IN_IMAGE}/bin/java\", \"-version\"]"),
        ]
    }

    /// Links the JRE and writes the image's root filesystem tar to `tar`.
    pub(super) fn write_rootfs(&self, tar: &Path) -> Result<(), BaseImageError> {
        let work = tar.parent().unwrap_or(Path::new("."));
        let jre = work.join("jre");
        self.runtime.link(&jre)?;
        let fs = self.runtime.rootfs(&jre)?;
        let file = std::fs::File::create(tar)
            .map_err(BaseImageError::io(format!("creating {}", tar.display())))?;
        Ok(fs.write_tar(io::BufWriter::new(file))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_module_is_rejected_naming_it() {
        let recipe = JlinkRecipe {
            modules: vec!["java.se".into(), "no.such.module".into()],
            ..JlinkRecipe::default()
        };
        let Err(err) = plan(&recipe) else {
            panic!("accepted an unknown module");
        };
        assert_eq!(err.code(), "base_image_config_invalid");
        assert!(err.to_string().contains("modules[1]"), "{err}");
        assert!(err.to_string().contains("no.such.module"), "{err}");
    }

    #[test]
    fn a_bad_repository_is_rejected() {
        let recipe = JlinkRecipe {
            repository: "Not/Valid".into(),
            ..JlinkRecipe::default()
        };
        let Err(err) = plan(&recipe) else {
            panic!("accepted a bad repository");
        };
        assert_eq!(err.code(), "base_image_config_invalid");
    }

    #[test]
    fn the_jre_key_is_stable_and_names_the_java_major() {
        let a = plan(&JlinkRecipe::default()).unwrap();
        let b = plan(&JlinkRecipe::default()).unwrap();
        assert_eq!(a.reference, b.reference);
        let tag = a.reference.tag().unwrap();
        let major = a.runtime.jdk().major();
        assert!(tag.starts_with(&format!("{major}-")), "{tag}");
        assert_eq!(tag.len(), format!("{major}-").len() + 12);
        let fewer = plan(&JlinkRecipe {
            modules: vec!["java.base".into()],
            ..JlinkRecipe::default()
        })
        .unwrap();
        assert_ne!(a.reference, fewer.reference);
    }
}
