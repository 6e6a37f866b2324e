//! Everything the backend would apply for one deployment, as objects and as
//! one multi-document YAML that `kubectl apply -f -` accepts: what the
//! `k8s-render` tool prints, with no cluster.

use cameleer_runtime::DeployRequest;
use serde::Serialize;

use crate::error::{K8sError, K8sResult};
use crate::namespace::TenantNamespace;
use crate::options::KubernetesOptions;
use crate::workload;

/// Every object the backend applies for `request`, in the order it applies
/// them: the namespace and its policies, quota and limit range, the
/// Deployment and (when the app declares a port) the Service. Each is the
/// JSON the backend sends, `apiVersion` and `kind` included.
pub fn deployment_objects(
    request: &DeployRequest,
    options: &KubernetesOptions,
) -> K8sResult<Vec<serde_json::Value>> {
    let ns = TenantNamespace::new(&request.app.tenant, &request.app.env, options);
    let mut objects = vec![to_value(&ns.namespace)?];
    for policy in &ns.network_policies {
        objects.push(to_value(policy)?);
    }
    objects.push(to_value(&ns.quota)?);
    objects.push(to_value(&ns.limit_range)?);
    objects.push(to_value(&workload::deployment(request, options)?)?);
    if let Some(service) = workload::service(request) {
        objects.push(to_value(&service)?);
    }
    Ok(objects)
}

/// The JSON of a k8s-openapi object (with its `apiVersion` and `kind`).
pub fn to_value(object: &impl Serialize) -> K8sResult<serde_json::Value> {
    serde_json::to_value(object).map_err(|e| K8sError::invalid("object", e.to_string()))
}

/// `objects` as one multi-document YAML stream, each document starting
/// with `---`.
pub fn to_yaml(objects: &[serde_json::Value]) -> K8sResult<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        let doc = serde_saphyr::to_string(object)
            .map_err(|e| K8sError::invalid("yaml", e.to_string()))?;
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
