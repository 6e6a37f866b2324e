//! Removing an app image: what the retention sweep asks of the builder.
//!
//! The engine refuses to remove an image by id while it has tags in more
//! than one reference (`v{N}` and `{env}-v{N}` count as two), so every tag
//! is removed first, and the image goes with its last tag. Before touching
//! a tag, the containers made from the image are looked for: an image in
//! use is left whole (`conflict`), not half untagged.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveImageOptionsBuilder};
use cameleer_runtime::{Error, ImageRef, Result};

use crate::engine::{backend, is_conflict, is_not_found};

/// Removes every tag of the image `image` is pinned to, then the image.
pub(super) async fn remove_image(docker: &Docker, image: &ImageRef) -> Result<()> {
    let digest = image
        .digest()
        .ok_or_else(|| Error::Conflict(format!("{image} is not pinned to an image id")))?;
    let id = format!("sha256:{digest}");
    let tags = match docker.inspect_image(&id).await {
        Ok(inspected) => inspected.repo_tags.unwrap_or_default(),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(backend(format!("inspecting image {image}"), e)),
    };
    let users = containers_of(docker, &id).await?;
    if let Some(first) = users.first() {
        return Err(Error::Conflict(format!(
            "{image} is used by {} container(s), e.g. {first}",
            users.len()
        )));
    }
    // Never forced: a container made meanwhile makes the engine refuse.
    let options = RemoveImageOptionsBuilder::new().build();
    for reference in tags.iter().map(String::as_str).chain([id.as_str()]) {
        match docker
            .remove_image(reference, Some(options.clone()), None)
            .await
        {
            Ok(_) => {}
            // The last tag took the image with it.
            Err(e) if is_not_found(&e) => {}
            Err(e) if is_conflict(&e) => {
                return Err(Error::Conflict(format!("the engine keeps {image}: {e}")));
            }
            Err(e) => return Err(backend(format!("removing {reference}"), e)),
        }
    }
    Ok(())
}

/// The names (or ids) of the containers, running or not, made from `id`.
async fn containers_of(docker: &Docker, id: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([("ancestor".to_string(), vec![id.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| backend(format!("listing the containers of {id}"), e))?;
    Ok(containers
        .into_iter()
        .map(|c| {
            c.names
                .and_then(|n| n.into_iter().next())
                .or(c.id)
                .unwrap_or_default()
        })
        .collect())
}
