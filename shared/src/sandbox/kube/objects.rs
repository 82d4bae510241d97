//! The Kubernetes objects of one sandbox, as data: Pod, PersistentVolumeClaim,
//! Service and the sandboxd token Secret. Pure functions, so tests can dump
//! them for `kubernetes-validate` and check each Pod Security control.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::KubeOptions;
use crate::error::{Error, Result};
use crate::sandbox::remote::{SANDBOXD_PORT, TOKEN_ENV};

/// Vite's port in the pod (and the Service's only port).
pub const VITE_PORT: u16 = 5173;
/// The container's name in every sandbox pod.
pub const CONTAINER: &str = "sandbox";
/// The key of the token in the sandboxd Secret.
pub const TOKEN_KEY: &str = "token";
/// The non-root user and group the image runs as.
const UID: i64 = 1000;
/// Where the project volume is mounted (sandboxd's default workspace).
const WORKSPACE: &str = "/workspace";
/// HOME inside the pod: writable, on an emptyDir.
const HOME: &str = "/home/apna";

/// Label on every object the driver makes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "apna");
/// Label on every sandbox pod (the NetworkPolicies select it).
pub const ROLE: (&str, &str) = ("apna.dev/role", "preview");
/// Label naming the project an object belongs to (how every lookup finds them).
pub const PROJECT_LABEL: &str = "apna.dev/project";
/// Label of warm (unclaimed) objects.
pub const WARM_LABEL: &str = "apna.dev/warm";
/// Label of a warm pod claimed by a project whose adoption is not finished.
pub const ADOPTING_LABEL: &str = "apna.dev/adopting";
/// On a claimed warm pod: the starter the adopting project wants, when it is
/// not the default the warm pod was seeded from.
pub const STARTER_LABEL: &str = "apna.dev/starter";
/// The Service's selector label (`app=project-{id}`).
pub const APP_LABEL: &str = "app";

/// The names of one set of objects: `project-{id}` or `warm-{suffix}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Pod, PVC and (for projects) Service name.
    pub base: String,
}

impl Names {
    /// Names for project `id`; refuses ids that do not make DNS-1035 labels.
    pub fn project(id: &str) -> Result<Names> {
        let base = format!("project-{id}");
        if !is_dns1035_label(&base) {
            return Err(Error::InvalidInput(format!(
                "{id:?} cannot name a Kubernetes sandbox: `project-{{id}}` must be a DNS-1035 label \
                 (lowercase letters, digits and '-', ending in a letter or digit, at most 63 characters)"
            )));
        }
        Ok(Names { base })
    }

    /// Names for a new warm pod set.
    pub fn warm() -> Names {
        Names {
            base: format!("warm-{:08x}", rand::random::<u32>()),
        }
    }

    /// The sandboxd token Secret's name.
    pub fn secret(&self) -> String {
        format!("{}-sandboxd", self.base)
    }
}

/// Whether `s` is a DNS-1035 label: what Service names (and so ours) must be.
pub fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Labels of a project's objects.
pub fn project_labels(id: &str) -> BTreeMap<String, String> {
    let mut l = common_labels();
    l.insert(PROJECT_LABEL.into(), id.into());
    l
}

/// Labels of a project's pod: the project's plus the Service selector.
pub fn project_pod_labels(id: &str) -> BTreeMap<String, String> {
    let mut l = project_labels(id);
    l.insert(APP_LABEL.into(), format!("project-{id}"));
    l
}

/// Labels of warm objects.
pub fn warm_labels() -> BTreeMap<String, String> {
    let mut l = common_labels();
    l.insert(WARM_LABEL.into(), "true".into());
    l
}

fn common_labels() -> BTreeMap<String, String> {
    [MANAGED_BY, ROLE]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The label selector finding a project's objects.
pub fn project_selector(id: &str) -> String {
    format!("{PROJECT_LABEL}={id}")
}

/// The project an object belongs to, from its label.
pub fn project_of(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(PROJECT_LABEL).map(String::as_str)
}

/// The label selector finding the objects of any of `ids` (set-based:
/// `apna.dev/project in (a,b)`), for reading a page of projects in one list.
pub fn projects_selector<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let ids: Vec<&str> = ids.into_iter().collect();
    format!("{PROJECT_LABEL} in ({})", ids.join(","))
}

/// The label selector finding warm pods.
pub fn warm_selector() -> String {
    format!("{WARM_LABEL}=true")
}

fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// The sandboxd token Secret (immutable: a pod reads it once at start).
pub fn secret(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    token: &str,
) -> Secret {
    Secret {
        metadata: meta(name, namespace, labels),
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// The project volume: 5Gi, ReadWriteOnce, `KUBE_STORAGE_CLASS` or the cluster default.
pub fn pvc(
    name: &str,
    opts: &KubeOptions,
    labels: BTreeMap<String, String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(name, &opts.namespace, labels),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: opts.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(quantities(&[("storage", "5Gi")])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The project's ClusterIP Service `project-{id}`: Vite's port only (Caddy's
/// upstream). sandboxd is reached through the pod, never the Service.
pub fn service(names: &Names, project_id: &str, namespace: &str) -> Service {
    Service {
        metadata: meta(&names.base, namespace, project_labels(project_id)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([(
                APP_LABEL.to_string(),
                format!("project-{project_id}"),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("vite".into()),
                port: i32::from(VITE_PORT),
                target_port: Some(IntOrString::Int(i32::from(VITE_PORT))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a pod is made for.
pub struct PodSpecInput<'a> {
    /// Pod name.
    pub name: &'a str,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The PVC holding the workspace.
    pub claim: &'a str,
    /// The Secret holding sandboxd's token.
    pub secret: &'a str,
    /// `APNA_PROJECT_ID` for sandboxd's logs (the warm name for warm pods).
    pub log_id: &'a str,
    /// The starter an empty volume is seeded from (`APNA_STARTER`), when not the default.
    pub starter: Option<&'a str>,
}

/// A sandbox pod: `apna sandboxd` on 7070 and Vite on 5173, meeting the
/// "restricted" Pod Security Standard with a read-only root filesystem.
pub fn pod(opts: &KubeOptions, input: PodSpecInput<'_>) -> Pod {
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let empty_dir = |name: &str, limit: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(limit.into())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    };
    let port = |name: &str, port: u16| ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let http_probe = |path: &str, port: u16, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![
            port("vite", VITE_PORT),
            port("sandboxd", SANDBOXD_PORT),
        ]),
        env: Some(
            vec![
                EnvVar {
                    name: TOKEN_ENV.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: input.secret.into(),
                            key: TOKEN_KEY.into(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                env("APNA_PROJECT_ID", input.log_id),
                env("APNA_HMR_CLIENT_PORT", "443"),
                env("HOME", HOME),
            ]
            .into_iter()
            .chain(input.starter.map(|s| env("APNA_STARTER", s)))
            .chain(
                (!opts.ui_origins.is_empty())
                    .then(|| env("APNA_UI_ORIGINS", &opts.ui_origins.join(","))),
            )
            .collect(),
        ),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "250m"), ("memory", "512Mi")])),
            limits: Some(quantities(&[("cpu", "1"), ("memory", "2Gi")])),
            ..Default::default()
        }),
        // Ready = Vite answers: that is when the preview works.
        readiness_probe: Some(http_probe("/", VITE_PORT, 2)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(10),
            ..http_probe("/healthz", SANDBOXD_PORT, 10)
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("workspace", WORKSPACE),
            mount("tmp", "/tmp"),
            mount("home", HOME),
        ]),
        ..Default::default()
    };
    Pod {
        metadata: meta(input.name, &opts.namespace, input.labels),
        spec: Some(PodSpec {
            containers: vec![container],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            restart_policy: Some("Always".into()),
            // Stop and hibernate should not wait the default 30 s.
            termination_grace_period_seconds: Some(5),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(UID),
                run_as_group: Some(UID),
                fs_group: Some(UID),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: Some(vec![
                Volume {
                    name: "workspace".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: input.claim.into(),
                        read_only: Some(false),
                    }),
                    ..Default::default()
                },
                empty_dir("tmp", "1Gi"),
                empty_dir("home", "256Mi"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::kube::fixtures;

    fn project_pod_input() -> PodSpecInput<'static> {
        PodSpecInput {
            name: "project-abc123",
            labels: project_pod_labels("abc123"),
            claim: "project-abc123",
            secret: "project-abc123-sandboxd",
            log_id: "abc123",
            starter: None,
        }
    }

    fn project_pod() -> Pod {
        pod(&fixtures::options(), project_pod_input())
    }

    /// Every control of the "restricted" Pod Security Standard (and the
    /// "baseline" ones it includes), checked on the generated pod.
    /// The sandbox container's environment, as name and plain value.
    fn env_of(p: &Pod) -> Vec<(String, Option<String>)> {
        p.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect()
    }

    #[test]
    fn a_pod_of_another_starter_is_seeded_from_it() {
        assert!(!env_of(&project_pod())
            .iter()
            .any(|(n, _)| n == "APNA_STARTER"));
        let minimal = pod(
            &fixtures::options(),
            PodSpecInput {
                starter: Some("minimal"),
                ..project_pod_input()
            },
        );
        assert!(env_of(&minimal).contains(&("APNA_STARTER".into(), Some("minimal".into()))));
    }

    #[test]
    fn pods_learn_the_ui_origins_that_may_drive_select() {
        assert!(!env_of(&project_pod())
            .iter()
            .any(|(n, _)| n == "APNA_UI_ORIGINS"));
        let opts = KubeOptions {
            ui_origins: vec![
                "https://d111.cloudfront.net".into(),
                "https://apna.example.com".into(),
            ],
            ..fixtures::options()
        };
        assert!(env_of(&pod(&opts, project_pod_input())).contains(&(
            "APNA_UI_ORIGINS".into(),
            Some("https://d111.cloudfront.net,https://apna.example.com".into())
        )));
    }

    #[test]
    fn the_pod_meets_the_restricted_pod_security_standard() {
        let pod = project_pod();
        let spec = pod.spec.as_ref().unwrap();
        let psc = spec.security_context.as_ref().unwrap();
        // Baseline: host namespaces, host ports, hostPath, privileged, added capabilities.
        assert_ne!(spec.host_network, Some(true));
        assert_ne!(spec.host_pid, Some(true));
        assert_ne!(spec.host_ipc, Some(true));
        assert!(psc.windows_options.is_none(), "no HostProcess");
        assert!(psc.sysctls.is_none(), "no sysctls");
        assert!(psc.se_linux_options.is_none(), "no custom SELinux type");
        assert!(spec.init_containers.is_none() && spec.ephemeral_containers.is_none());
        // Restricted: volume types.
        for v in spec.volumes.as_ref().unwrap() {
            let allowed = v.persistent_volume_claim.is_some()
                || v.empty_dir.is_some()
                || v.config_map.is_some()
                || v.secret.is_some()
                || v.projected.is_some()
                || v.downward_api.is_some()
                || v.csi.is_some()
                || v.ephemeral.is_some();
            assert!(allowed && v.host_path.is_none(), "volume {}", v.name);
        }
        // Restricted: non-root and seccomp at the pod level.
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_ne!(psc.run_as_user, Some(0));
        assert_eq!(psc.run_as_user, Some(1000));
        assert_eq!(psc.fs_group, Some(1000));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(spec.containers.len(), 1);
        for c in &spec.containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.privileged, Some(false));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_ne!(sc.run_as_user, Some(0));
            assert_eq!(
                sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                Some("RuntimeDefault")
            );
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
            assert!(caps.add.is_none(), "no capabilities added");
            assert!(sc.proc_mount.is_none() && sc.windows_options.is_none());
            assert!(c.ports.iter().flatten().all(|p| p.host_port.is_none()));
            // Beyond the standard: a read-only root filesystem with writable
            // workspace, /tmp and HOME only.
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            let mounts: Vec<&str> = c
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| m.mount_path.as_str())
                .collect();
            assert_eq!(mounts, ["/workspace", "/tmp", "/home/apna"]);
            // Only Vite's and sandboxd's ports.
            let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
            assert_eq!(ports, [5173, 7070]);
        }
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
    }

    /// Dumps the generated objects and validates them with `kubernetes-validate`
    /// (strict, Kubernetes 1.35), which `tests/run` installs.
    #[test]
    fn generated_objects_pass_kubernetes_validate() {
        let opts = fixtures::options();
        let names = Names::project("abc123").unwrap();
        let objects = [
            ("pod.json", serde_json::to_value(project_pod()).unwrap()),
            (
                "pvc.json",
                serde_json::to_value(pvc(&names.base, &opts, project_labels("abc123"))).unwrap(),
            ),
            (
                "service.json",
                serde_json::to_value(service(&names, "abc123", &opts.namespace)).unwrap(),
            ),
            (
                "secret.json",
                serde_json::to_value(secret(
                    &names.secret(),
                    &opts.namespace,
                    project_labels("abc123"),
                    "0123abcd",
                ))
                .unwrap(),
            ),
            (
                "pvc-default-class.json",
                serde_json::to_value(pvc(
                    "warm-00000000",
                    &KubeOptions {
                        storage_class: None,
                        ..opts.clone()
                    },
                    warm_labels(),
                ))
                .unwrap(),
            ),
        ];
        let dir = std::env::var_os("APNA_KUBE_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("apna-kube-{}", std::process::id()))
            });
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = vec![];
        for (name, value) in objects {
            assert!(
                value["apiVersion"].is_string() && value["kind"].is_string(),
                "{name}"
            );
            let path = dir.join(name);
            std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
            files.push(path);
        }
        let out = match std::process::Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", "1.35.0"])
            .args(&files)
            .output()
        {
            Ok(out) => out,
            Err(e) if std::env::var("APNA_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("kubernetes-validate not runnable ({e}); tests/run installs it")
            }
            Err(e) => {
                eprintln!(
                    "skipped: kubernetes-validate not runnable ({e}); the objects are in {dir:?}"
                );
                return;
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubernetes-validate:\n{text}");
        assert_eq!(
            text.matches(" passed for resource ").count(),
            files.len(),
            "{text}"
        );
    }

    #[test]
    fn names_are_dns1035_labels() {
        let id = "0b9e6c1e-8f6f-4c53-9d0c-3f0f6a1c2b7d";
        assert_eq!(Names::project(id).unwrap().base, format!("project-{id}"));
        assert_eq!(
            Names::project("abc").unwrap().secret(),
            "project-abc-sandboxd"
        );
        let long_ok = "a".repeat(55);
        assert!(Names::project(&long_ok).is_ok());
        for bad in [
            "",
            "ABC",
            "a_b",
            "a.b",
            "abc-",
            "ünï",
            "a b",
            "x.default.svc.cluster.local",
            &"a".repeat(56),
        ] {
            match Names::project(bad) {
                Err(Error::InvalidInput(m)) => assert!(m.contains("DNS-1035"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let w = Names::warm();
        assert!(is_dns1035_label(&w.base), "{}", w.base);
        assert!(w.base.starts_with("warm-") && w.base.len() == 13);
    }
}
