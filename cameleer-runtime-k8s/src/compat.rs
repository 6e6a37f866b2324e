//! The few fields whose types differ between the Kubernetes versions
//! k8s-openapi supports (the binary picks the version, not this crate): a
//! Deployment's `spec` became required in 1.37, and a Deployment
//! condition's `type` and `status` optional.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

k8s_openapi::k8s_if_le_1_36! {
    /// The Deployment's spec.
    pub(crate) fn deployment_spec(d: &Deployment) -> Option<&DeploymentSpec> {
        d.spec.as_ref()
    }

    /// The Deployment's spec, to change.
    #[cfg(test)]
    pub(crate) fn deployment_spec_mut(d: &mut Deployment) -> Option<&mut DeploymentSpec> {
        d.spec.as_mut()
    }

    /// A Deployment of `metadata` and `spec`, without status.
    pub(crate) fn new_deployment(metadata: ObjectMeta, spec: DeploymentSpec) -> Deployment {
        Deployment { metadata, spec: Some(spec), status: None }
    }

    /// A condition's type and status.
    pub(crate) fn condition(c: &DeploymentCondition) -> (&str, &str) {
        (&c.type_, &c.status)
    }

    /// A condition of `type_` and `status`.
    #[cfg(test)]
    pub(crate) fn new_condition(type_: &str, status: &str) -> DeploymentCondition {
        DeploymentCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            ..DeploymentCondition::default()
        }
    }
}

k8s_openapi::k8s_if_ge_1_37! {
    /// The Deployment's spec.
    pub(crate) fn deployment_spec(d: &Deployment) -> Option<&DeploymentSpec> {
        Some(&d.spec)
    }

    /// The Deployment's spec, to change.
    #[cfg(test)]
    pub(crate) fn deployment_spec_mut(d: &mut Deployment) -> Option<&mut DeploymentSpec> {
        Some(&mut d.spec)
    }

    /// A Deployment of `metadata` and `spec`, without status.
    pub(crate) fn new_deployment(metadata: ObjectMeta, spec: DeploymentSpec) -> Deployment {
        Deployment { metadata, spec, status: None }
    }

    /// A condition's type and status.
    pub(crate) fn condition(c: &DeploymentCondition) -> (&str, &str) {
        (
            c.type_.as_deref().unwrap_or_default(),
            c.status.as_deref().unwrap_or_default(),
        )
    }

    /// A condition of `type_` and `status`.
    #[cfg(test)]
    pub(crate) fn new_condition(type_: &str, status: &str) -> DeploymentCondition {
        DeploymentCondition {
            type_: Some(type_.to_string()),
            status: Some(status.to_string()),
            ..DeploymentCondition::default()
        }
    }
}
