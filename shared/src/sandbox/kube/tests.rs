//! The kube driver against the mock API server of `fixtures`: the exact
//! requests of each operation, the state read from each pod state, warm pod
//! adoption, sandboxd through `pods/proxy`, and error mapping.

use http::Method;
use serde_json::json;

use super::fixtures::*;
use super::{KubeOptions, KubeProvider, KubeSandbox};
use crate::error::Error;
use crate::sandbox::remote::{SandboxdTransport, TOKEN_HEADER};
use crate::sandbox::{ProjectPath, Sandbox, SandboxProvider, SandboxState};

const PROJECT_SELECTOR: &str = "apna.dev/project=abc123";
const WARM_SELECTOR: &str = "apna.dev/warm=true";
const PREVIEW: &str = "project-abc123.apna.svc.cluster.local:5173";
const PVCS: &str = "persistentvolumeclaims";

fn sandbox_with(opts: KubeOptions) -> (KubeSandbox, ApiServer) {
    let (client, server) = client();
    let provider = KubeProvider::new(client, opts);
    (provider.kube(ID).unwrap(), server)
}

fn sandbox() -> (KubeSandbox, ApiServer) {
    sandbox_with(options())
}

fn no_pods() -> Exchange {
    list("pods", PROJECT_SELECTOR).reply(200, list_of("Pod", vec![]))
}

fn pods(items: Vec<serde_json::Value>) -> Exchange {
    list("pods", PROJECT_SELECTOR).reply(200, list_of("Pod", items))
}

fn volumes(items: Vec<serde_json::Value>) -> Exchange {
    list(PVCS, PROJECT_SELECTOR).reply(200, list_of("PersistentVolumeClaim", items))
}

fn secrets(items: Vec<serde_json::Value>) -> Exchange {
    list("secrets", PROJECT_SELECTOR).reply(200, list_of("Secret", items))
}

fn apply_project_objects() -> Vec<Exchange> {
    vec![
        apply(PVCS, NAME, pvc_manifest(NAME, project_labels())).reply(201, project_pvc()),
        apply("services", NAME, service_manifest()).reply(201, stored(service_manifest())),
        apply("pods", NAME, project_pod_manifest()).reply(201, project_pod(PodPhase::Pending)),
    ]
}

#[tokio::test]
async fn ensure_creates_a_new_project() {
    let (sb, server) = sandbox();
    let mut script = vec![
        no_pods(),
        volumes(vec![]),
        secrets(vec![]),
        create_secret(secret_manifest(
            &format!("{NAME}-sandboxd"),
            project_labels(),
        ))
        .reply(
            201,
            secret_with_token(&format!("{NAME}-sandboxd"), project_labels()),
        ),
    ];
    script.extend(apply_project_objects());
    let server = server.run(script);
    let st = sb.ensure().await.unwrap();
    assert_eq!(st.state, SandboxState::Starting);
    assert_eq!(st.preview_addr, None);
    assert_eq!(server.await.unwrap(), 7);
}

#[tokio::test]
async fn ensure_on_a_running_sandbox_only_reads() {
    let (sb, server) = sandbox();
    let server = server.run(vec![pods(vec![project_pod(PodPhase::Ready)])]);
    let st = sb.ensure().await.unwrap();
    assert_eq!(st.state, SandboxState::Ready);
    assert_eq!(st.preview_addr.as_deref(), Some(PREVIEW));
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test]
async fn ensure_finishes_a_half_created_sandbox() {
    // A step that died after the Secret and the volume: the retry applies the
    // Service and the Pod with the existing Secret and volume.
    let (sb, server) = sandbox();
    let secret = format!("{NAME}-sandboxd");
    let mut script = vec![
        no_pods(),
        volumes(vec![project_pvc()]),
        secrets(vec![secret_with_token(&secret, project_labels())]),
    ];
    script.extend(apply_project_objects().into_iter().skip(1));
    let server = server.run(script);
    assert_eq!(sb.ensure().await.unwrap().state, SandboxState::Starting);
    assert_eq!(server.await.unwrap(), 5);
}

#[tokio::test]
async fn ensure_restarts_a_stopped_adopted_sandbox_on_its_volume() {
    // Adopted from warm pod warm-0a1b2c3d: its volume and Secret keep their names.
    let (sb, server) = sandbox();
    let mut pvc = stored(pvc_manifest("warm-0a1b2c3d", project_labels()));
    pvc["metadata"]["name"] = json!("warm-0a1b2c3d");
    let secret = secret_with_token("warm-0a1b2c3d-sandboxd", project_labels());
    let manifest = pod_manifest(
        NAME,
        project_pod_labels(),
        "warm-0a1b2c3d",
        "warm-0a1b2c3d-sandboxd",
        ID,
    );
    let server = server.run(vec![
        no_pods(),
        volumes(vec![pvc]),
        secrets(vec![secret]),
        apply("services", NAME, service_manifest()).reply(200, stored(service_manifest())),
        apply("pods", NAME, manifest.clone()).reply(201, pod_in(manifest, PodPhase::Pending)),
    ]);
    assert_eq!(sb.ensure().await.unwrap().state, SandboxState::Starting);
    assert_eq!(server.await.unwrap(), 5);
}

#[tokio::test]
async fn ensure_waits_for_a_terminating_pod_or_volume() {
    let (sb, server) = sandbox();
    let server = server.run(vec![pods(vec![terminating(project_pod(PodPhase::Ready))])]);
    let st = sb.ensure().await.unwrap();
    assert_eq!(st.state, SandboxState::Starting);
    assert!(st.detail.unwrap().contains("previous pod"));
    assert_eq!(server.await.unwrap(), 1);

    // Destroyed a moment ago: the volume `project-{id}` is still going away.
    let (sb, server) = sandbox();
    let server = server.run(vec![no_pods(), volumes(vec![terminating(project_pvc())])]);
    let st = sb.ensure().await.unwrap();
    assert_eq!(st.state, SandboxState::Starting);
    assert!(st.detail.unwrap().contains("previous volume"));
    assert_eq!(server.await.unwrap(), 2);
}

#[tokio::test]
async fn ensure_replaces_an_evicted_pod() {
    let (sb, server) = sandbox();
    let server = server.run(vec![
        pods(vec![project_pod(PodPhase::Evicted)]),
        delete("pods", NAME).reply(200, project_pod(PodPhase::Evicted)),
    ]);
    let st = sb.ensure().await.unwrap();
    assert_eq!(st.state, SandboxState::Starting);
    assert_eq!(server.await.unwrap(), 2);
}

#[tokio::test]
async fn status_follows_the_pod() {
    let cases = [
        (PodPhase::Pending, SandboxState::Starting, None),
        (
            PodPhase::Unschedulable,
            SandboxState::Starting,
            Some("Insufficient memory"),
        ),
        (PodPhase::Running, SandboxState::Starting, None),
        (PodPhase::Ready, SandboxState::Ready, None),
        (
            PodPhase::CrashLoop,
            SandboxState::Crashed,
            Some("CrashLoopBackOff: back-off 40s restarting failed container (last exit code 1, Error)"),
        ),
        (
            PodPhase::ImagePullBackOff,
            SandboxState::Crashed,
            Some("ImagePullBackOff"),
        ),
        (
            PodPhase::Evicted,
            SandboxState::Crashed,
            Some("Evicted: The node was low on resource"),
        ),
    ];
    for (phase, want, detail) in cases {
        let (sb, server) = sandbox();
        let server = server.run(vec![pods(vec![project_pod(phase)])]);
        let st = sb.status().await.unwrap();
        assert_eq!(st.state, want, "{phase:?}");
        assert_eq!(
            st.preview_addr.is_some(),
            want == SandboxState::Ready,
            "{phase:?}"
        );
        if let Some(d) = detail {
            let got = st.detail.unwrap_or_default();
            assert!(got.contains(d), "{phase:?}: {got}");
        }
        assert_eq!(server.await.unwrap(), 1, "{phase:?}");
    }

    // No live pod: the volume decides between Stopped and Missing.
    for (pod, pvcs, want) in [
        (vec![], vec![project_pvc()], SandboxState::Stopped),
        (
            vec![terminating(project_pod(PodPhase::Ready))],
            vec![project_pvc()],
            SandboxState::Stopped,
        ),
        (vec![], vec![], SandboxState::Missing),
        (
            vec![terminating(project_pod(PodPhase::Ready))],
            vec![terminating(project_pvc())],
            SandboxState::Missing,
        ),
    ] {
        let (sb, server) = sandbox();
        let server = server.run(vec![pods(pod), volumes(pvcs)]);
        assert_eq!(sb.status().await.unwrap().state, want);
        assert_eq!(server.await.unwrap(), 2);
    }
}

/// `obj` (the project's pod or volume) as another project's.
fn of_project(mut obj: serde_json::Value, id: &str) -> serde_json::Value {
    obj["metadata"]["name"] = json!(format!("project-{id}"));
    obj["metadata"]["labels"]["apna.dev/project"] = json!(id);
    obj
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn statuses_of_a_page_are_one_list_of_pods_and_one_of_volumes() {
    let (api, server) = client();
    let provider = KubeProvider::new(api, options());
    let server = server.run(vec![
        list(
            "pods",
            "apna.dev/project in (abc123,def456,ggg777,hhh555,zzz999)",
        )
        .reply(
            200,
            list_of(
                "Pod",
                vec![
                    project_pod(PodPhase::Ready),
                    of_project(project_pod(PodPhase::CrashLoop), "ggg777"),
                    of_project(terminating(project_pod(PodPhase::Ready)), "def456"),
                ],
            ),
        ),
        // Only the projects without a live pod: the volume decides.
        list(PVCS, "apna.dev/project in (def456,hhh555,zzz999)").reply(
            200,
            list_of(
                "PersistentVolumeClaim",
                vec![
                    of_project(project_pvc(), "def456"),
                    of_project(terminating(project_pvc()), "zzz999"),
                ],
            ),
        ),
    ]);
    // Unsorted, a duplicate, and an id that cannot name a sandbox (left out).
    let page = ids(&[
        "zzz999",
        "abc123",
        "def456",
        "ggg777",
        "hhh555",
        "abc123",
        "Not_A_Label",
    ]);
    let got = provider.statuses(&page).await.unwrap();
    assert_eq!(server.await.unwrap(), 2);
    let state = |id: &str| got.get(id).map(|s| s.state);
    assert_eq!(state("abc123"), Some(SandboxState::Ready));
    assert_eq!(got["abc123"].preview_addr.as_deref(), Some(PREVIEW));
    assert_eq!(state("ggg777"), Some(SandboxState::Crashed));
    assert!(got["ggg777"]
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains("CrashLoopBackOff"));
    assert_eq!(state("def456"), Some(SandboxState::Stopped));
    assert_eq!(state("zzz999"), Some(SandboxState::Missing));
    assert_eq!(state("hhh555"), Some(SandboxState::Missing));
    assert_eq!(got.len(), 5, "{got:?}");
}

#[tokio::test]
async fn statuses_with_a_pod_each_are_one_request_and_errors_are_errors() {
    let (api, server) = client();
    let provider = KubeProvider::new(api, options());
    let server = server.run(vec![list("pods", "apna.dev/project in (abc123,def456)")
        .reply(
            200,
            list_of(
                "Pod",
                vec![
                    project_pod(PodPhase::Ready),
                    of_project(project_pod(PodPhase::Pending), "def456"),
                ],
            ),
        )]);
    let got = provider
        .statuses(&ids(&["def456", "abc123"]))
        .await
        .unwrap();
    assert_eq!(server.await.unwrap(), 1);
    assert_eq!(got["abc123"].state, SandboxState::Ready);
    assert_eq!(got["def456"].state, SandboxState::Starting);
    // The same state a single status() reads.
    let (sb, server) = sandbox();
    let server = server.run(vec![pods(vec![project_pod(PodPhase::Ready)])]);
    assert_eq!(sb.status().await.unwrap(), got["abc123"]);
    server.await.unwrap();

    // Nothing that could name a sandbox: nothing asked.
    let (api, server) = client();
    let provider = KubeProvider::new(api, options());
    let server = server.run(vec![]);
    assert!(provider
        .statuses(&ids(&["Not_A_Label"]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(server.await.unwrap(), 0);

    // A refused list is the caller's to degrade, not an empty answer.
    let (api, server) = client();
    let provider = KubeProvider::new(api, options());
    let server = server.run(vec![list("pods", "apna.dev/project in (abc123)")
        .reply(403, status(403, "Forbidden", "pods is forbidden"))]);
    assert!(provider.statuses(&ids(&["abc123"])).await.is_err());
    server.await.unwrap();
}

#[tokio::test]
async fn stop_deletes_the_pod_and_keeps_the_volume() {
    let (sb, server) = sandbox();
    let server = server.run(vec![delete_collection("pods", PROJECT_SELECTOR)
        .reply(200, list_of("Pod", vec![project_pod(PodPhase::Ready)]))]);
    sb.stop().await.unwrap();
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test]
async fn destroy_deletes_everything_and_404_is_done() {
    let (sb, server) = sandbox();
    let server = server.run(vec![
        delete_collection("pods", PROJECT_SELECTOR).reply(200, list_of("Pod", vec![])),
        delete("services", NAME).reply(
            404,
            status(404, "NotFound", "services \"project-abc123\" not found"),
        ),
        delete_collection(PVCS, PROJECT_SELECTOR)
            .reply(200, list_of("PersistentVolumeClaim", vec![project_pvc()])),
        delete_collection("secrets", PROJECT_SELECTOR).reply(200, list_of("Secret", vec![])),
    ]);
    sb.destroy().await.unwrap();
    assert_eq!(server.await.unwrap(), 4);
}

fn warm_options(n: u32) -> KubeOptions {
    KubeOptions {
        warm_pods: n,
        ..options()
    }
}

/// The exchanges that move claimed warm pod `warm-{suffix}` to the project.
fn finish_adoption(suffix: &str) -> Vec<Exchange> {
    let warm = format!("warm-{suffix}");
    let to_project = json!({
        "metadata": {
            "labels": { "apna.dev/warm": null, "apna.dev/project": ID },
            "ownerReferences": null
        }
    });
    let mut adopted = warm_pod(suffix, PodPhase::Ready);
    adopted["metadata"]["labels"] = project_pod_labels();
    vec![
        merge("secrets", &format!("{warm}-sandboxd"), to_project.clone()).reply(
            200,
            secret_with_token(&format!("{warm}-sandboxd"), project_labels()),
        ),
        merge(PVCS, &warm, to_project).reply(200, stored(pvc_manifest(&warm, project_labels()))),
        apply("services", NAME, service_manifest()).reply(201, stored(service_manifest())),
        merge(
            "pods",
            &warm,
            json!({ "metadata": { "labels": { "apna.dev/adopting": null } } }),
        )
        .reply(200, adopted),
    ]
}

fn claim(suffix: &str) -> Exchange {
    merge(
        "pods",
        &format!("warm-{suffix}"),
        json!({
            "metadata": {
                "resourceVersion": "41",
                "labels": {
                    "apna.dev/warm": null,
                    "apna.dev/project": ID,
                    "app": NAME,
                    "apna.dev/adopting": "true"
                }
            }
        }),
    )
}

/// The exchanges that start one new warm pod set (random name).
fn start_warm() -> Vec<Exchange> {
    const WARM_APPLY: &str = r"^/api/v1/namespaces/apna/(pods|persistentvolumeclaims)/warm-[0-9a-f]{8}\?&force=true&fieldManager=apna$";
    let mut pod = apply("pods", "warm-x", json!(null)).uri_pattern(WARM_APPLY);
    pod.body = BodyMatch::Redacted(warm_pod_manifest_marker(), redact_warm_name);
    let mut secret = create_secret(json!(null));
    secret.body = BodyMatch::Redacted(warm_secret_marker(), redact_warm_secret);
    let mut pvc = apply(PVCS, "warm-x", json!(null)).uri_pattern(WARM_APPLY);
    pvc.body = BodyMatch::Redacted(warm_pvc_marker(), redact_warm_name);
    vec![
        pod.reply(201, warm_pod("00000000", PodPhase::Pending)),
        secret.reply(
            201,
            secret_with_token("warm-00000000-sandboxd", warm_labels()),
        ),
        pvc.reply(201, stored(pvc_manifest("warm-00000000", warm_labels()))),
    ]
}

/// Replaces every `warm-xxxxxxxx` in an object with `warm-NAME`.
fn redact_warm_name(v: &mut serde_json::Value) {
    let re = regex::Regex::new("warm-[0-9a-f]{8}").unwrap();
    let text = re.replace_all(&v.to_string(), "warm-NAME").to_string();
    *v = serde_json::from_str(&text).unwrap();
}

fn redact_warm_secret(v: &mut serde_json::Value) {
    redact_warm_name(v);
    v["data"]["token"] = json!("<token>");
}

fn warm_pod_manifest_marker() -> serde_json::Value {
    pod_manifest(
        "warm-NAME",
        warm_labels(),
        "warm-NAME",
        "warm-NAME-sandboxd",
        "warm-NAME",
    )
}

fn owned_by_warm_pod() -> serde_json::Value {
    // The uid is the one the pod apply answered with (`uid-warm-00000000`,
    // redacted like the names).
    json!([{ "apiVersion": "v1", "kind": "Pod", "name": "warm-NAME", "uid": "uid-warm-NAME" }])
}

fn warm_secret_marker() -> serde_json::Value {
    let mut s = secret_manifest("warm-NAME-sandboxd", warm_labels());
    s["metadata"]["ownerReferences"] = owned_by_warm_pod();
    s
}

fn warm_pvc_marker() -> serde_json::Value {
    let mut p = pvc_manifest("warm-NAME", warm_labels());
    p["metadata"]["ownerReferences"] = owned_by_warm_pod();
    p
}

#[tokio::test]
async fn a_new_project_adopts_a_warm_pod_and_the_pool_is_refilled() {
    let (sb, server) = sandbox_with(warm_options(2));
    let mut script = vec![
        no_pods(),
        volumes(vec![]),
        list("pods", WARM_SELECTOR).reply(
            200,
            list_of(
                "Pod",
                vec![
                    warm_pod("11111111", PodPhase::Pending),
                    warm_pod("22222222", PodPhase::Ready),
                    terminating(warm_pod("33333333", PodPhase::Ready)),
                    warm_pod("44444444", PodPhase::CrashLoop),
                ],
            ),
        ),
        // The Ready one is claimed first.
        claim("22222222").reply(200, {
            let mut p = warm_pod("22222222", PodPhase::Ready);
            p["metadata"]["labels"] = project_pod_labels();
            p["metadata"]["labels"]["apna.dev/adopting"] = json!("true");
            p
        }),
    ];
    script.extend(finish_adoption("22222222"));
    // One usable warm pod is left of two: one more is started.
    script.extend(start_warm());
    let server = server.run(script);
    let st = sb.ensure().await.unwrap();
    assert_eq!(st.state, SandboxState::Ready);
    assert_eq!(st.preview_addr.as_deref(), Some(PREVIEW));
    assert_eq!(server.await.unwrap(), 11);
}

#[tokio::test]
async fn a_warm_pod_claimed_by_another_create_is_skipped() {
    let (sb, server) = sandbox_with(warm_options(1));
    let mut script = vec![
        no_pods(),
        volumes(vec![]),
        list("pods", WARM_SELECTOR).reply(
            200,
            list_of(
                "Pod",
                vec![
                    warm_pod("22222222", PodPhase::Ready),
                    warm_pod("11111111", PodPhase::Running),
                ],
            ),
        ),
        claim("22222222").reply(409, status(409, "Conflict", "the object has been modified")),
        claim("11111111").reply(200, {
            let mut p = warm_pod("11111111", PodPhase::Running);
            p["metadata"]["labels"] = project_pod_labels();
            p
        }),
    ];
    let mut rest = finish_adoption("11111111");
    rest[3] = merge(
        "pods",
        "warm-11111111",
        json!({ "metadata": { "labels": { "apna.dev/adopting": null } } }),
    )
    .reply(200, warm_pod("11111111", PodPhase::Running));
    script.extend(rest);
    // Two were listed, one adopted: one left, which is the one wanted.
    let server = server.run(script);
    assert_eq!(sb.ensure().await.unwrap().state, SandboxState::Starting);
    assert_eq!(server.await.unwrap(), 9);
}

#[tokio::test]
async fn an_empty_pool_is_filled_and_the_project_created_as_usual() {
    let (sb, server) = sandbox_with(warm_options(1));
    let mut script = vec![
        no_pods(),
        volumes(vec![]),
        list("pods", WARM_SELECTOR).reply(200, list_of("Pod", vec![])),
    ];
    script.extend(start_warm());
    script.extend([
        secrets(vec![]),
        create_secret(secret_manifest(
            &format!("{NAME}-sandboxd"),
            project_labels(),
        ))
        .reply(
            201,
            secret_with_token(&format!("{NAME}-sandboxd"), project_labels()),
        ),
    ]);
    script.extend(apply_project_objects());
    let server = server.run(script);
    assert_eq!(sb.ensure().await.unwrap().state, SandboxState::Starting);
    assert_eq!(server.await.unwrap(), 11);
}

#[tokio::test]
async fn ensure_finishes_an_interrupted_adoption() {
    let (sb, server) = sandbox_with(warm_options(1));
    let mut claimed = warm_pod("22222222", PodPhase::Ready);
    claimed["metadata"]["labels"] = project_pod_labels();
    claimed["metadata"]["labels"]["apna.dev/adopting"] = json!("true");
    let mut script = vec![pods(vec![claimed])];
    script.extend(finish_adoption("22222222"));
    let server = server.run(script);
    assert_eq!(sb.ensure().await.unwrap().state, SandboxState::Ready);
    assert_eq!(server.await.unwrap(), 5);
}

#[tokio::test]
async fn a_warm_pod_adopted_for_another_starter_gets_its_files() {
    // Warm pods are seeded from the default starter. A `landing` project's
    // claim names its starter, and finishing the adoption asks sandboxd for
    // it (through pods/proxy) before the pod is unmarked.
    let (sb, server) = sandbox_with(warm_options(1));
    let mut claim_landing = claim("22222222");
    claim_landing.body = BodyMatch::Json(json!({
        "metadata": {
            "resourceVersion": "41",
            "labels": {
                "apna.dev/warm": null,
                "apna.dev/project": ID,
                "app": NAME,
                "apna.dev/adopting": "true",
                "apna.dev/starter": "landing"
            }
        }
    }));
    let mut claimed = warm_pod("22222222", PodPhase::Ready);
    claimed["metadata"]["labels"] = project_pod_labels();
    claimed["metadata"]["labels"]["apna.dev/adopting"] = json!("true");
    claimed["metadata"]["labels"]["apna.dev/starter"] = json!("landing");
    let mut script = vec![
        no_pods(),
        volumes(vec![]),
        list("pods", WARM_SELECTOR).reply(
            200,
            list_of("Pod", vec![warm_pod("22222222", PodPhase::Ready)]),
        ),
        claim_landing.reply(200, claimed.clone()),
    ];
    let mut finish = finish_adoption("22222222");
    finish.pop(); // the unmark, which here also drops the starter label
    script.extend(finish);
    script.extend([
        pods(vec![claimed]),
        get("secrets", "warm-22222222-sandboxd").reply(
            200,
            secret_with_token("warm-22222222-sandboxd", project_labels()),
        ),
        proxy(Method::POST, "warm-22222222", "/v1/ensure?template=landing")
            .header(TOKEN_HEADER, TOKEN)
            .reply_raw(
                200,
                br#"{"state":"ready","preview_addr":"127.0.0.1:5173","detail":null}"#,
            ),
    ]);
    let mut adopted = warm_pod("22222222", PodPhase::Ready);
    adopted["metadata"]["labels"] = project_pod_labels();
    script.push(
        merge(
            "pods",
            "warm-22222222",
            json!({ "metadata": { "labels": {
                "apna.dev/adopting": null,
                "apna.dev/starter": null
            } } }),
        )
        .reply(200, adopted),
    );
    // The pool of one is empty now: one more is started.
    script.extend(start_warm());
    let server = server.run(script);
    let st = sb.ensure_from("landing").await.unwrap();
    assert_eq!(st.state, SandboxState::Ready);
    assert_eq!(server.await.unwrap(), 14);
}

#[tokio::test]
async fn an_unknown_starter_is_bad_input_and_asks_nothing() {
    let (sb, server) = sandbox();
    let server = server.run(vec![]);
    assert!(matches!(
        sb.ensure_from("nextjs").await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(server.await.unwrap(), 0);
}

#[tokio::test]
async fn the_sweep_replaces_crashed_warm_pods() {
    let (client, server) = client();
    let provider = KubeProvider::new(client, warm_options(2));
    let mut script = vec![
        list("pods", WARM_SELECTOR).reply(
            200,
            list_of(
                "Pod",
                vec![
                    warm_pod("22222222", PodPhase::Ready),
                    warm_pod("44444444", PodPhase::CrashLoop),
                ],
            ),
        ),
        delete("pods", "warm-44444444").reply(200, warm_pod("44444444", PodPhase::CrashLoop)),
    ];
    script.extend(start_warm());
    let server = server.run(script);
    provider.replenish().await.unwrap();
    assert_eq!(server.await.unwrap(), 5);
}

#[tokio::test]
async fn files_go_through_pods_proxy_with_the_token() {
    let (sb, server) = sandbox();
    let secret = format!("{NAME}-sandboxd");
    let file = |n: &str| {
        proxy(Method::GET, NAME, "/")
            .uri_pattern(r"^/api/v1/namespaces/apna/pods/project-abc123:7070/proxy/v1/")
            .header(TOKEN_HEADER, TOKEN)
            .reply_raw(200, if n == "a" { b"first" } else { b"second" })
    };
    let server = server.run(vec![
        pods(vec![project_pod(PodPhase::Ready)]),
        get("secrets", &secret).reply(200, secret_with_token(&secret, project_labels())),
        file("a"),
        // The pod and token are remembered: the second read is one request.
        file("b"),
    ]);
    let path = ProjectPath::parse("src/App.tsx").unwrap();
    assert_eq!(sb.read_file(&path).await.unwrap(), b"first");
    assert_eq!(sb.read_file(&path).await.unwrap(), b"second");
    assert_eq!(server.await.unwrap(), 4);
}

/// The browser check runs in the pod: sandboxd gets the request through
/// pods/proxy with the token and answers with the report (PNG bytes base64).
#[tokio::test]
async fn the_smoke_check_runs_in_the_pod_through_pods_proxy() {
    use crate::sandbox::smoke::{SmokeRequest, Viewport};
    let (sb, server) = sandbox();
    let secret = format!("{NAME}-sandboxd");
    let req = SmokeRequest {
        timeout_ms: 5_000,
        viewports: vec![Viewport::desktop()],
    };
    let report = json!({
        "checked": true,
        "diagnostics": [{"file": "src/App.tsx", "line": 9, "column": 31,
                         "message": "TypeError: x is null", "source": "browser"}],
        "screenshots": [{"viewport": "desktop", "width": 1280, "height": 800, "png": "iVBORw=="}],
        "note": null,
        "elapsed_ms": 412
    });
    let mut smoke = proxy(Method::POST, NAME, "/v1/smoke")
        .header(TOKEN_HEADER, TOKEN)
        .reply(200, report);
    smoke.content_type = Some("application/json");
    smoke.body = BodyMatch::Json(serde_json::to_value(&req).unwrap());
    let server = server.run(vec![
        pods(vec![project_pod(PodPhase::Ready)]),
        get("secrets", &secret).reply(200, secret_with_token(&secret, project_labels())),
        smoke,
    ]);
    let got = sb.smoke_check(&req).await.unwrap();
    assert!(got.checked);
    assert_eq!(got.diagnostics.len(), 1);
    assert_eq!(
        (got.diagnostics[0].file.as_str(), got.diagnostics[0].line),
        ("src/App.tsx", 9)
    );
    assert_eq!(got.screenshots[0].png, b"\x89PNG");
    assert_eq!(server.await.unwrap(), 3);
}

#[tokio::test]
async fn a_refused_token_is_read_again_once() {
    // The sandbox was destroyed and created again by another process: new
    // Secret, new token. The cached one gets 401; the driver looks again.
    let (sb, server) = sandbox();
    let secret = format!("{NAME}-sandboxd");
    let mut old = secret_with_token(&secret, project_labels());
    old["data"]["token"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "old-token"
    ));
    let file = || {
        proxy(Method::GET, NAME, "/")
            .uri_pattern(r"^/api/v1/namespaces/apna/pods/project-abc123:7070/proxy/v1/")
    };
    let server = server.run(vec![
        pods(vec![project_pod(PodPhase::Ready)]),
        get("secrets", &secret).reply(200, old),
        file().header(TOKEN_HEADER, "old-token").reply_raw(
            401,
            br#"{"error":{"code":"unauthorized","message":"wrong token"}}"#,
        ),
        pods(vec![project_pod(PodPhase::Ready)]),
        get("secrets", &secret).reply(200, secret_with_token(&secret, project_labels())),
        file().header(TOKEN_HEADER, TOKEN).reply_raw(200, b"ok"),
    ]);
    let path = ProjectPath::parse("a.txt").unwrap();
    assert_eq!(sb.read_file(&path).await.unwrap(), b"ok");
    assert_eq!(server.await.unwrap(), 6);
}

#[tokio::test(start_paused = true)]
async fn file_operations_wait_for_a_starting_pod() {
    let (sb, server) = sandbox();
    let secret = format!("{NAME}-sandboxd");
    let healthz = || proxy(Method::GET, NAME, "/healthz");
    let server = server.run(vec![
        pods(vec![project_pod(PodPhase::Pending)]),
        pods(vec![project_pod(PodPhase::Running)]),
        get("secrets", &secret).reply(200, secret_with_token(&secret, project_labels())),
        // sandboxd not listening yet: the API server answers for it.
        healthz().reply(
            503,
            status(503, "ServiceUnavailable", "error trying to reach service: dial tcp 10.1.2.3:7070: connect: connection refused"),
        ),
        healthz().reply_raw(200, b"ok"),
        proxy(Method::GET, NAME, "/")
            .uri_pattern(r"^/api/v1/namespaces/apna/pods/project-abc123:7070/proxy/v1/")
            .header(TOKEN_HEADER, TOKEN)
            .reply_raw(200, b"content"),
    ]);
    let path = ProjectPath::parse("index.html").unwrap();
    assert_eq!(sb.read_file(&path).await.unwrap(), b"content");
    assert_eq!(server.await.unwrap(), 6);
}

#[tokio::test(start_paused = true)]
async fn file_operations_on_a_missing_sandbox_are_not_ready() {
    let (sb, server) = sandbox();
    let server = server.run(vec![no_pods(), volumes(vec![])]);
    match sb.list_files().await {
        Err(Error::NotReady(m)) => assert!(m.contains("does not exist yet"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.await.unwrap(), 2);

    // A crash-looping pod: the reason, not a wait.
    let (sb, server) = sandbox();
    let server = server.run(vec![pods(vec![project_pod(PodPhase::CrashLoop)])]);
    match sb.list_files().await {
        Err(Error::NotReady(m)) => assert!(m.contains("CrashLoopBackOff"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test]
async fn logs_of_a_crashing_container_come_from_pods_log() {
    let (sb, server) = sandbox();
    let mut logs = get("pods", &format!("{NAME}/log"));
    logs.uri = UriMatch::Exact(format!(
        "/api/v1/namespaces/apna/pods/{NAME}/log?&container=sandbox&previous=true&tailLines=50"
    ));
    let server = server.run(vec![
        pods(vec![project_pod(PodPhase::CrashLoop)]),
        logs.reply_raw(200, b"apna sandboxd: APNA_SANDBOXD_TOKEN is required\n"),
    ]);
    assert!(sb.logs(50).await.unwrap().contains("APNA_SANDBOXD_TOKEN"));
    assert_eq!(server.await.unwrap(), 2);
}

#[tokio::test]
async fn api_errors_map_to_error_kinds() {
    type Check = fn(&Error) -> bool;
    let cases: [(u16, &str, Check); 6] = [
        (
            403,
            "Forbidden",
            |e| matches!(e, Error::Sandbox(m) if m.contains("refused to list pods in namespace apna")),
        ),
        (
            401,
            "Unauthorized",
            |e| matches!(e, Error::Sandbox(m) if m.contains("refused to list pods")),
        ),
        (429, "TooManyRequests", |e| matches!(e, Error::NotReady(_))),
        (500, "InternalError", |e| matches!(e, Error::NotReady(_))),
        (503, "ServiceUnavailable", |e| {
            matches!(e, Error::NotReady(_))
        }),
        (
            422,
            "Invalid",
            |e| matches!(e, Error::Sandbox(m) if m.contains("rejected list pods")),
        ),
    ];
    for (code, reason, check) in cases {
        let (sb, server) = sandbox();
        let server = server.run(vec![
            list("pods", PROJECT_SELECTOR).reply(code, status(code, reason, "nope"))
        ]);
        let e = sb.ensure().await.unwrap_err();
        assert!(check(&e), "{code}: {e:?}");
        server.await.unwrap();
    }

    // The API server unreachable (the mock gone): NotReady, the ASL retries.
    let (sb, server) = sandbox();
    drop(server);
    assert!(matches!(sb.status().await, Err(Error::NotReady(_))));

    // A write refused by RBAC names the verb and resource.
    let (sb, server) = sandbox();
    let server = server.run(vec![
        no_pods(),
        volumes(vec![project_pvc()]),
        secrets(vec![secret_with_token(&format!("{NAME}-sandboxd"), project_labels())]),
        apply("services", NAME, service_manifest()).reply(
            403,
            status(403, "Forbidden", "services \"project-abc123\" is forbidden: User \"lambda\" cannot patch resource \"services\""),
        ),
    ]);
    match sb.ensure().await {
        Err(Error::Sandbox(m)) => assert!(m.contains("refused to patch services"), "{m}"),
        other => panic!("{other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test]
async fn the_proxy_transport_adds_its_base_and_maps_api_server_answers() {
    let (client, server) = client();
    let t = super::KubeProxyTransport::new(client, NS, NAME);
    let server = server.run(vec![
        Exchange {
            content_type: Some("application/json"),
            body: BodyMatch::Json(json!({ "command": "true" })),
            ..proxy(Method::POST, NAME, "/v1/exec?timeout=5")
        }
        .header(TOKEN_HEADER, TOKEN)
        .reply(200, json!({ "exit_code": 0 })),
        // sandboxd's own errors pass through untouched...
        proxy(Method::GET, NAME, "/v1/files/missing").reply(
            404,
            json!({ "error": { "code": "not_found", "message": "no such file" } }),
        ),
        // ...the API server's are mapped.
        proxy(Method::GET, NAME, "/v1/files/x").reply(
            404,
            status(404, "NotFound", "pods \"project-abc123\" not found"),
        ),
        proxy(Method::DELETE, NAME, "/v1/files/x")
            .reply(403, status(403, "Forbidden", "cannot delete pods/proxy")),
    ]);
    let req = http::Request::post("/v1/exec?timeout=5")
        .header(TOKEN_HEADER, TOKEN)
        .header("content-type", "application/json")
        .body(bytes::Bytes::from_static(br#"{"command":"true"}"#))
        .unwrap();
    let res = t.send(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body().as_ref(), br#"{"exit_code":0}"#);
    let get = |p: &str| http::Request::get(p).body(bytes::Bytes::new()).unwrap();
    let res = t.send(get("/v1/files/missing")).await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(matches!(
        t.send(get("/v1/files/x")).await,
        Err(Error::NotReady(_))
    ));
    let del = http::Request::delete("/v1/files/x")
        .body(bytes::Bytes::new())
        .unwrap();
    match t.send(del).await {
        Err(Error::Sandbox(m)) => assert!(m.contains("refused to delete pods/proxy"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.await.unwrap(), 4);
}

#[test]
fn ids_that_are_not_dns_labels_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (client, _server) = client();
    let provider = KubeProvider::new(client, options());
    for bad in ["ABC", "a.b", "x.default.svc.cluster.local", "a_b", "a-", ""] {
        assert!(
            matches!(provider.sandbox(bad), Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
    }
    assert_eq!(provider.backend(), "kube");
}

/// The Role in `infra/k8s/rbac.yaml` is exactly `DRIVER_RULES`, which the mock
/// API server enforces on every request of these tests.
#[test]
fn the_role_in_infra_k8s_is_what_the_driver_needs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/k8s/rbac.yaml");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            path,
        ])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other if std::env::var("APNA_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("python3 with PyYAML is needed (tests/run installs it): {other:?}")
        }
        other => {
            eprintln!("skipped: python3 with PyYAML not available: {other:?}");
            return;
        }
    };
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let role = docs.iter().find(|d| d["kind"] == "Role").expect("a Role");
    assert_eq!(role["metadata"]["name"], "apna-sandbox-driver");
    let mut got = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(rule["apiGroups"], json!([""]));
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                got.insert((
                    r.as_str().unwrap().to_string(),
                    v.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    let want: std::collections::BTreeSet<(String, String)> = DRIVER_RULES
        .iter()
        .flat_map(|(r, verbs)| verbs.iter().map(move |v| (r.to_string(), v.to_string())))
        .collect();
    assert_eq!(got, want);
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding")
        .expect("a RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "apna:sandbox-driver");
    assert_eq!(binding["roleRef"]["name"], "apna-sandbox-driver");
}

#[test]
fn rbac_verbs_follow_the_request() {
    let cases = [
        (
            Method::GET,
            "/api/v1/namespaces/apna/pods?&labelSelector=x",
            None,
            vec![("pods", "list")],
        ),
        (
            Method::GET,
            "/api/v1/namespaces/apna/secrets/s",
            None,
            vec![("secrets", "get")],
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/apna/pods/p?&force=true&fieldManager=apna",
            Some("application/apply-patch+yaml"),
            vec![("pods", "patch"), ("pods", "create")],
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/apna/pods/p?&fieldManager=apna",
            Some("application/merge-patch+json"),
            vec![("pods", "patch")],
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/apna/pods?&labelSelector=x",
            None,
            vec![("pods", "deletecollection")],
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/apna/services/s?",
            None,
            vec![("services", "delete")],
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/apna/pods/p:7070/proxy/v1/file?path=a",
            None,
            vec![("pods/proxy", "update")],
        ),
        (
            Method::GET,
            "/api/v1/namespaces/apna/pods/p/log?&previous=true",
            None,
            vec![("pods/log", "get")],
        ),
    ];
    for (m, path, ct, want) in cases {
        let got = rbac_of(&m, path, ct);
        let want: Vec<(String, &str)> = want.into_iter().map(|(r, v)| (r.to_string(), v)).collect();
        assert_eq!(got, want, "{m} {path}");
    }
}

/// Backends over the kube driver (mock API server), an in-memory store
/// holding project `abc123` (ready, last active an hour ago) and a preview
/// idle time of one minute.
async fn sleepy_backends(client: kube::Client) -> (crate::app::Backends, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        crate::testing::fixtures::config(dir.path(), &[("APNA_PREVIEW_IDLE_MINUTES", "1")]);
    let store = crate::testing::fixtures::memory_store().await;
    let mut p = crate::domain::Project::new("u1", "a habit tracker", "app");
    p.id = ID.into();
    p.status = crate::domain::ProjectStatus::Ready;
    p.last_active = crate::domain::now() - chrono::Duration::hours(1);
    store.create_project(&p).await.unwrap();
    let (blobs, blob_dir) = crate::testing::fixtures::fs_blobs().await;
    std::mem::forget(blob_dir);
    let provider = KubeProvider::new(client, options());
    let backends = crate::app::Backends::new(
        config,
        store,
        blobs,
        std::sync::Arc::new(provider),
        std::sync::Arc::new(crate::testing::model::NoModel),
    );
    (backends, dir)
}

/// sandboxd's `GET /v1/activity` through pods/proxy, answering `activity`.
fn activity(answer: &'static [u8]) -> Exchange {
    proxy(Method::GET, NAME, "/v1/activity")
        .header(TOKEN_HEADER, TOKEN)
        .reply_raw(200, answer)
}

#[tokio::test]
async fn light_sleep_deletes_the_pod_of_an_idle_preview_and_keeps_the_volume() {
    let (client, server) = client();
    let (backends, _dir) = sleepy_backends(client).await;
    let secret = format!("{NAME}-sandboxd");
    let quiet = br#"{"open_sockets":0,"quiet_secs":600}"#;
    let server = server.run(vec![
        // The sweep's one look at what is awake: pods that belong to a project.
        list("pods", "apna.dev/project")
            .reply(200, list_of("Pod", vec![project_pod(PodPhase::Ready)])),
        // First look: the pod's sandboxd says nobody is connected.
        pods(vec![project_pod(PodPhase::Ready)]),
        pods(vec![project_pod(PodPhase::Ready)]),
        get("secrets", &secret).reply(200, secret_with_token(&secret, project_labels())),
        activity(quiet),
        pods(vec![project_pod(PodPhase::Ready)]),
        // Under the run lock, once more (the connection is remembered).
        pods(vec![project_pod(PodPhase::Ready)]),
        activity(quiet),
        pods(vec![project_pod(PodPhase::Ready)]),
        // Sleep: the pod goes, nothing else (no volume, Service or Secret request).
        delete_collection("pods", PROJECT_SELECTOR)
            .reply(200, list_of("Pod", vec![project_pod(PodPhase::Ready)])),
    ]);
    let report = crate::light_sleep::sleep_idle(&backends).await.unwrap();
    assert_eq!(report.slept, vec![ID.to_string()], "{report:?}");
    assert_eq!(server.await.unwrap(), 10);
    // The lock is free again: a run can start.
    assert_eq!(backends.store.run_lock_holder(ID).await.unwrap(), None);
}

#[tokio::test]
async fn light_sleep_leaves_a_pod_with_an_open_preview_connection() {
    let (client, server) = client();
    let (backends, _dir) = sleepy_backends(client).await;
    let secret = format!("{NAME}-sandboxd");
    let server = server.run(vec![
        list("pods", "apna.dev/project")
            .reply(200, list_of("Pod", vec![project_pod(PodPhase::Ready)])),
        pods(vec![project_pod(PodPhase::Ready)]),
        pods(vec![project_pod(PodPhase::Ready)]),
        get("secrets", &secret).reply(200, secret_with_token(&secret, project_labels())),
        activity(br#"{"open_sockets":1,"quiet_secs":0}"#),
    ]);
    let report = crate::light_sleep::sleep_idle(&backends).await.unwrap();
    assert!(report.slept.is_empty(), "{report:?}");
    assert_eq!(report.awake, 1);
    assert_eq!(server.await.unwrap(), 5);
}

#[tokio::test]
async fn light_sleep_never_touches_a_project_whose_run_holds_the_lock() {
    let (client, server) = client();
    let (backends, _dir) = sleepy_backends(client).await;
    backends
        .store
        .set_project_status(
            ID,
            crate::domain::ProjectStatus::Ready,
            crate::domain::ProjectStatus::Building,
            None,
        )
        .await
        .unwrap();
    assert!(backends
        .store
        .acquire_run_lock(ID, &crate::domain::new_run_id())
        .await
        .unwrap());
    // Only the list of what is awake: the project's status says a run has it.
    let server = server.run(vec![list("pods", "apna.dev/project")
        .reply(200, list_of("Pod", vec![project_pod(PodPhase::Ready)]))]);
    let report = crate::light_sleep::sleep_idle(&backends).await.unwrap();
    assert!(report.slept.is_empty(), "{report:?}");
    assert_eq!(server.await.unwrap(), 1);
}
