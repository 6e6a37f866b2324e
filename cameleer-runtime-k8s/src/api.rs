//! The calls the backend makes, each named for RBAC: typed wrappers over
//! the kube client that turn every failure into a [`K8sError`] naming the
//! verb and resource.

use std::fmt::Debug;

use futures::AsyncBufRead;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Call, K8sError, K8sResult};

/// `plural[.group]`, as RBAC names a resource.
pub(crate) fn resource_name<K: Resource<DynamicType = ()>>() -> String {
    let group = K::group(&());
    let plural = K::plural(&());
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// A kube client and the field manager of every apply.
#[derive(Clone)]
pub(crate) struct Kube {
    pub client: Client,
    pub field_manager: String,
}

impl Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

type Namespaced = NamespaceResourceScope;

impl Kube {
    fn call<K: Resource<DynamicType = ()>>(
        verb: &'static str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Call {
        let mut call = Call::new(verb, resource_name::<K>());
        call.namespace = namespace.map(str::to_string);
        call.name = name.map(str::to_string);
        call
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    /// Server-side apply of a namespaced object (its namespace and name are
    /// in its metadata), forcing our field manager's ownership.
    pub async fn apply<K>(&self, object: &K) -> K8sResult<K>
    where
        K: Resource<DynamicType = (), Scope = Namespaced>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let meta = object.meta();
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        Api::<K>::namespaced(self.client.clone(), &ns)
            .patch(&name, &self.params(), &Patch::Apply(object))
            .await
            .map_err(|e| K8sError::from_kube(Self::call::<K>("patch", Some(&ns), Some(&name)), e))
    }

    /// Server-side apply of a cluster-scoped object.
    pub async fn apply_cluster<K>(&self, object: &K) -> K8sResult<K>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        Api::<K>::all(self.client.clone())
            .patch(&name, &self.params(), &Patch::Apply(object))
            .await
            .map_err(|e| K8sError::from_kube(Self::call::<K>("patch", None, Some(&name)), e))
    }

    /// A namespaced object, or `None`.
    pub async fn get<K>(&self, ns: &str, name: &str) -> K8sResult<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = Namespaced> + Clone + DeserializeOwned + Debug,
    {
        Api::<K>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| K8sError::from_kube(Self::call::<K>("get", Some(ns), Some(name)), e))
    }

    /// Objects matching `selector`, in `ns` or (with `None`) in every
    /// namespace.
    pub async fn list<K>(&self, ns: Option<&str>, selector: &str) -> K8sResult<Vec<K>>
    where
        K: Resource<DynamicType = (), Scope = Namespaced> + Clone + DeserializeOwned + Debug,
    {
        let api = match ns {
            Some(ns) => Api::<K>::namespaced(self.client.clone(), ns),
            None => Api::<K>::all(self.client.clone()),
        };
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| K8sError::from_kube(Self::call::<K>("list", ns, None), e))
    }

    /// Deletes a namespaced object (foreground: its pods go first); gone
    /// already is fine.
    pub async fn delete<K>(&self, ns: &str, name: &str) -> K8sResult<()>
    where
        K: Resource<DynamicType = (), Scope = Namespaced> + Clone + DeserializeOwned + Debug,
    {
        match Api::<K>::namespaced(self.client.clone(), ns)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match K8sError::from_kube(Self::call::<K>("delete", Some(ns), Some(name)), e)
            {
                K8sError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// The log of a pod's container.
    pub async fn log_stream(
        &self,
        ns: &str,
        pod: &str,
        params: &LogParams,
    ) -> K8sResult<impl AsyncBufRead + Unpin + Send + use<>> {
        let api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client.clone(), ns);
        let stream = api.log_stream(pod, params).await.map_err(|e| {
            K8sError::from_kube(Call::new("get", "pods/log").in_namespace(ns).named(pod), e)
        })?;
        Ok(Box::pin(stream))
    }
}
