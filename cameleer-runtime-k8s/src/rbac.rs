//! The shipped least-privilege RBAC manifests (`rbac/` in this crate) and
//! a check of what they allow.
//!
//! - [`CONTROLLER`]: a ServiceAccount `cameleer-runtime` in
//!   `cameleer-system`, its ClusterRole and binding: namespaces and their
//!   policies, Deployments, Services, pods (read) and their logs.
//! - [`KANIKO_BUILDS`]: the build namespace and a Role in it, for
//!   [`KanikoImageBuilder`](crate::KanikoImageBuilder) only.
//!
//! `kubectl apply -f` either file as it is. The crate's tests validate them
//! against the Kubernetes schemas and check that every call the backend
//! makes is covered ([`Rules::allows`]).

use serde_json::Value;

/// The controller's ServiceAccount, ClusterRole and ClusterRoleBinding.
pub const CONTROLLER: &str = include_str!("../rbac/controller.yaml");

/// The build namespace and the controller's Role and RoleBinding there.
pub const KANIKO_BUILDS: &str = include_str!("../rbac/kaniko-builds.yaml");

/// The build namespace the shipped Role is for.
pub const BUILD_NAMESPACE: &str = "cameleer-builds";

/// The documents of a manifest, as JSON.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// One rule: these verbs on these resources of these API groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// API groups (`""` is the core group).
    pub api_groups: Vec<String>,
    /// Resources, `pods/log` for a subresource.
    pub resources: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

/// The rules of a ClusterRole or a Role, and where they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `None` for a ClusterRole (every namespace, and cluster-scoped
    /// resources); the Role's namespace otherwise.
    pub namespace: Option<String>,
    /// The rules.
    pub rules: Vec<Rule>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

impl Rules {
    /// The ClusterRoles and Roles of `yaml`.
    pub fn of(yaml: &str) -> Vec<Self> {
        documents(yaml)
            .into_iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
            .map(|d| Self {
                namespace: (d["kind"] == "Role").then(|| {
                    d["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                }),
                rules: d["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| Rule {
                        api_groups: strings(&r["apiGroups"]),
                        resources: strings(&r["resources"]),
                        verbs: strings(&r["verbs"]),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Whether these rules allow `verb` on `resource` (`plural[.group]` or
    /// `plural[.group]/subresource`, as [`Call`](crate::Call) names it) in
    /// `namespace` (`None`: cluster-scoped or every namespace).
    pub fn allows(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        if let Some(own) = &self.namespace
            && namespace != Some(own.as_str())
        {
            return false;
        }
        let (name, sub) = match resource.split_once('/') {
            Some((name, sub)) => (name, Some(sub)),
            None => (resource, None),
        };
        let (plural, group) = name.split_once('.').unwrap_or((name, ""));
        let wanted = match sub {
            Some(sub) => format!("{plural}/{sub}"),
            None => plural.to_string(),
        };
        self.rules.iter().any(|r| {
            r.api_groups.iter().any(|g| g == group || g == "*")
                && r.resources.iter().any(|x| *x == wanted || x == "*")
                && r.verbs.iter().any(|v| v == verb || v == "*")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controllers_role_allows_what_it_says_and_nothing_else() {
        let roles = Rules::of(CONTROLLER);
        assert_eq!(roles.len(), 1);
        let r = &roles[0];
        assert_eq!(r.namespace, None);
        assert!(r.allows("patch", "deployments.apps", Some("cameleer-acme-dev")));
        assert!(r.allows("watch", "pods", None));
        assert!(r.allows("get", "pods/log", Some("x")));
        assert!(r.allows("create", "namespaces", None));
        assert!(!r.allows("delete", "namespaces", None));
        assert!(!r.allows("get", "secrets", Some("x")));
        assert!(!r.allows("create", "pods", Some("x")));
        assert!(!r.allows("create", "pods/exec", Some("x")));
        assert!(!r.allows("patch", "clusterroles.rbac.authorization.k8s.io", None));
        // No wildcards anywhere.
        for rule in &r.rules {
            for v in rule
                .verbs
                .iter()
                .chain(&rule.resources)
                .chain(&rule.api_groups)
            {
                assert_ne!(v, "*");
            }
        }
    }

    #[test]
    fn the_build_role_is_confined_to_the_build_namespace() {
        let roles = Rules::of(KANIKO_BUILDS);
        assert_eq!(roles.len(), 1);
        let r = &roles[0];
        assert_eq!(r.namespace.as_deref(), Some(BUILD_NAMESPACE));
        assert!(r.allows("create", "jobs.batch", Some(BUILD_NAMESPACE)));
        assert!(!r.allows("create", "jobs.batch", Some("cameleer-acme-dev")));
        assert!(!r.allows("get", "secrets", Some(BUILD_NAMESPACE)));
    }
}
