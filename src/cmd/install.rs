//! `loadshift install` prints the control plane's Kubernetes objects, the Kustomize base in
//! `deploy/kubernetes/` as `kubectl kustomize` renders it, plus a Secret with a fresh bearer
//! token (like `linkerd install | kubectl apply -f -`); `--actuator` adds the scale actuator's
//! RBAC (`components/actuator`). `loadshift uninstall` prints every object it creates, by kind
//! and name only, for `loadshift uninstall | kubectl delete -f -`.

use std::process::ExitCode;

use clap::Args;

/// The base's files, in the order Kustomize renders its resources.
const BASE: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../deploy/kubernetes/namespace.yaml"),
    ),
    (
        "serviceaccount.yaml",
        include_str!("../../deploy/kubernetes/serviceaccount.yaml"),
    ),
    (
        "rbac.yaml",
        include_str!("../../deploy/kubernetes/rbac.yaml"),
    ),
    (
        "configmap.yaml",
        include_str!("../../deploy/kubernetes/configmap.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../deploy/kubernetes/deployment.yaml"),
    ),
    (
        "service.yaml",
        include_str!("../../deploy/kubernetes/service.yaml"),
    ),
    ("pdb.yaml", include_str!("../../deploy/kubernetes/pdb.yaml")),
];

const ACTUATOR: &str = include_str!("../../deploy/kubernetes/components/actuator/rbac.yaml");

const DASHBOARD: &str = include_str!("../../deploy/kubernetes/grafana/loadshift.json");

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Also the scale actuator's rights (deployments/scale, pod template resources).
    #[arg(long)]
    pub actuator: bool,
}

/// Every object of the install, as YAML documents.
fn objects(actuator: bool, token: &str) -> Vec<String> {
    let mut docs: Vec<String> = BASE
        .iter()
        .flat_map(|(_, text)| text.split("\n---\n"))
        .map(|d| d.trim().to_string())
        .collect();
    if actuator {
        docs.extend(ACTUATOR.split("\n---\n").map(|d| d.trim().to_string()));
    }
    let dashboard: String = DASHBOARD.lines().map(|l| format!("    {l}\n")).collect();
    docs.push(format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: loadshift-grafana-dashboard\n  \
         namespace: loadshift\n  labels:\n    grafana_dashboard: \"1\"\ndata:\n  loadshift.json: |\n{}",
        dashboard.trim_end()
    ));
    docs.push(format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: loadshift-token\n  namespace: loadshift\n\
         type: Opaque\nstringData:\n  token: {token}"
    ));
    docs
}

pub fn install(args: InstallArgs) -> ExitCode {
    let token = crate::cmd::token::new_token();
    print!("{}", join(&objects(args.actuator, &token)));
    ExitCode::SUCCESS
}

/// Kind, name and namespace of every object `install --actuator` creates, cluster-scoped ones
/// last (the namespace goes last: deleting it removes what is left inside).
pub fn uninstall() -> ExitCode {
    let mut out = Vec::new();
    let mut namespace = None;
    for doc in objects(true, "unused") {
        let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&doc) else {
            continue;
        };
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let meta = |k: &str| {
            v.get("metadata")
                .and_then(|m| m.get(k))
                .and_then(|x| x.as_str())
                .map(str::to_string)
        };
        let mut d = format!(
            "apiVersion: {}\nkind: {}\nmetadata:\n  name: {}",
            field("apiVersion"),
            field("kind"),
            meta("name").unwrap_or_default()
        );
        if let Some(ns) = meta("namespace") {
            d.push_str(&format!("\n  namespace: {ns}"));
        }
        if field("kind") == "Namespace" {
            namespace = Some(d);
        } else {
            out.push(d);
        }
    }
    out.extend(namespace);
    print!("{}", join(&out));
    ExitCode::SUCCESS
}

fn join(docs: &[String]) -> String {
    let mut s = String::new();
    for d in docs {
        s.push_str("---\n");
        s.push_str(d);
        s.push('\n');
    }
    s
}
