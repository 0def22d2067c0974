//! `deploy/k8s`: every manifest the kustomization lists parses and has what Kubernetes
//! requires; Deployments run commands the real parsers accept, and their references
//! (Secret, volume claim, probe ports, selectors) resolve; the probes hit routes the admin
//! API answers; one KEDA ScaledObject per worker, on metric names Tidings exports and the
//! queue that worker consumes. (`.ci/run` also validates the core kinds with
//! `kubernetes-validate --strict` and the ScaledObjects against KEDA's CRD schemas.)

mod common;

use std::collections::BTreeMap;

use common::{queues, runs, strings, Runs, SERVICES};
use serde_json::Value;
use tidings_core::telemetry::names;
use tidings_deploy::load;

fn manifests() -> Vec<(String, Value)> {
    let kustomization = load("deploy/k8s/kustomization.yaml").unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for file in strings(&kustomization[0]["resources"], "kustomization resources") {
        for doc in load(&format!("deploy/k8s/{file}")).unwrap_or_else(|e| panic!("{e}")) {
            out.push((file.clone(), doc));
        }
    }
    for (file, doc) in &out {
        let what = format!("{file}: {}", doc["metadata"]["name"]);
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{what}: no {field}");
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{file}: a resource without a name"
        );
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "orderflow", "{what}");
        }
    }
    out
}

fn of_kind<'a>(all: &'a [(String, Value)], kind: &str) -> BTreeMap<String, &'a Value> {
    all.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| {
            (
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d,
            )
        })
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

/// Deployment name → what its one container runs.
fn deployments(all: &[(String, Value)]) -> BTreeMap<String, Runs> {
    let secrets = of_kind(all, "Secret");
    let claims = of_kind(all, "PersistentVolumeClaim");
    let mut out = BTreeMap::new();
    for (name, d) in of_kind(all, "Deployment") {
        let spec = &d["spec"];
        let pod = &spec["template"]["spec"];
        assert!(
            labels_match(
                &spec["selector"]["matchLabels"],
                &spec["template"]["metadata"]["labels"]
            ),
            "{name}: the selector matches the pod template"
        );
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        assert!(c["image"].is_string(), "{name}: image");
        let runs = runs(&strings(&c["args"], &name), &name);
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let secret = from["secretRef"]["name"].as_str().expect("secretRef");
            let s = secrets
                .get(secret)
                .unwrap_or_else(|| panic!("{name}: no Secret {secret}"));
            for key in ["TIDINGS_URL", "TIDINGS_ADMIN_TOKEN"] {
                assert!(s["stringData"][key].is_string(), "Secret {secret}: {key}");
            }
        }
        let ports: Vec<&str> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for probe in ["readinessProbe", "livenessProbe"] {
            if let Some(port) = c[probe]["httpGet"]["port"].as_str() {
                assert!(ports.contains(&port), "{name}: {probe} on a named port");
            }
        }
        // The SQLite file is shared: its claim exists, and every pod keeps to one node.
        for v in pod["volumes"].as_array().into_iter().flatten() {
            let claim = v["persistentVolumeClaim"]["claimName"]
                .as_str()
                .expect("claim");
            let pvc = claims
                .get(claim)
                .unwrap_or_else(|| panic!("{name}: no claim {claim}"));
            assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");
            let term = &pod["affinity"]["podAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"][0];
            assert_eq!(term["topologyKey"], "kubernetes.io/hostname", "{name}");
            assert!(labels_match(
                &term["labelSelector"]["matchLabels"],
                &spec["template"]["metadata"]["labels"]
            ));
        }
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/data", "{name}");
        out.insert(name, runs);
    }
    out
}

#[test]
fn deployments_run_every_service_and_services_resolve() {
    let all = manifests();
    let deps = deployments(&all);
    let mut served = Vec::new();
    for (name, runs) in &deps {
        if let Runs::OrderFlow(args) = runs {
            served.push(args.service);
            assert_eq!(
                args.common.data_dir,
                std::path::Path::new("./orderflow-data"),
                "{name}: no --data-dir, so the image's ORDERFLOW_DATA_DIR=/data applies"
            );
        }
    }
    for s in SERVICES {
        assert!(served.contains(&s), "no Deployment runs {s:?}");
    }
    let pods = of_kind(&all, "Deployment");
    for (name, svc) in of_kind(&all, "Service") {
        let target = pods
            .values()
            .find(|d| {
                labels_match(
                    &svc["spec"]["selector"],
                    &d["spec"]["template"]["metadata"]["labels"],
                )
            })
            .unwrap_or_else(|| panic!("Service {name} selects no Deployment"));
        let port = svc["spec"]["ports"][0]["targetPort"]
            .as_str()
            .expect("targetPort");
        let c = &target["spec"]["template"]["spec"]["containers"][0];
        assert!(
            c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == port),
            "{name}"
        );
    }
}

#[test]
fn one_scaled_object_per_worker_on_exported_metrics() {
    let all = manifests();
    let deps = deployments(&all);
    let mut scaled = Vec::new();
    for (name, so) in of_kind(&all, "ScaledObject") {
        assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
        let spec = &so["spec"];
        let target = spec["scaleTargetRef"]["name"]
            .as_str()
            .expect("scaleTargetRef.name");
        let Some(Runs::OrderFlow(args)) = deps.get(target) else {
            panic!("{name}: scales {target}, not an OrderFlow Deployment");
        };
        assert!(args.no_api, "{name}: scales a worker, not the API");
        scaled.push(target.to_string());
        let (min, max) = (
            spec["minReplicaCount"].as_u64(),
            spec["maxReplicaCount"].as_u64(),
        );
        assert!(
            matches!((min, max), (Some(a), Some(b)) if a <= b && b > 1),
            "{name}: {min:?}..{max:?}"
        );
        let queue = queues(args.service)[0];
        let mut metrics = Vec::new();
        for t in spec["triggers"].as_array().expect("triggers") {
            assert_eq!(t["type"], "prometheus", "{name}");
            assert!(matches!(
                t["metricType"].as_str(),
                Some("AverageValue" | "Value")
            ));
            let meta = t["metadata"].as_object().expect("trigger metadata");
            assert!(
                meta.values().all(Value::is_string),
                "{name}: KEDA takes strings only"
            );
            let threshold: f64 = meta["threshold"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("threshold");
            assert!(threshold > 0.0);
            assert!(meta["serverAddress"]
                .as_str()
                .is_some_and(|s| s.starts_with("http")));
            let query = meta["query"].as_str().expect("query");
            assert!(
                query.contains(&format!("{{queue=\"{queue}\"}}")),
                "{name}: {query}"
            );
            let metric = [names::QUEUE_DEPTH, names::OLDEST_AGE]
                .into_iter()
                .find(|m| query.contains(&format!("{m}{{")))
                .unwrap_or_else(|| panic!("{name}: {query} queries no exported queue metric"));
            metrics.push(metric);
        }
        metrics.sort();
        assert_eq!(
            metrics,
            [names::QUEUE_DEPTH, names::OLDEST_AGE],
            "{name}: depth and age"
        );
    }
    let workers: Vec<String> = deps
        .iter()
        .filter(|(_, r)| matches!(r, Runs::OrderFlow(a) if a.no_api))
        .map(|(n, _)| n.clone())
        .collect();
    scaled.sort();
    assert_eq!(scaled, workers, "one ScaledObject per worker");
}

/// The probes' paths are routes the admin API answers 200 on (OrderFlow mounts it at
/// /admin/, `tidings dashboard` at /), with the Host header the probe sends.
#[tokio::test]
async fn probes_hit_routes_that_answer() {
    use tower::ServiceExt;
    let all = manifests();
    let mut checked = 0;
    for (name, d) in of_kind(&all, "Deployment") {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &c[probe]["httpGet"];
            let Some(path) = get["path"].as_str() else {
                continue;
            };
            let path = path.strip_prefix("/admin").unwrap_or(path);
            let host = get["httpHeaders"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["name"] == "Host")
                .and_then(|h| h["value"].as_str())
                .unwrap_or("10.0.0.7:8080");
            let transport =
                std::sync::Arc::new(tidings_core::transport::memory::MemoryTransport::new());
            let mut state = tidings_admin::AdminState::new(transport);
            if !c["args"].to_string().contains("orderflow-entrypoint") {
                state = state.token(Some("t0ken".into())); // tidings dashboard has TIDINGS_ADMIN_TOKEN
            }
            let req = axum::http::Request::get(path)
                .header("host", host)
                .body(axum::body::Body::empty())
                .expect("request");
            let res = tidings_admin::router(state)
                .oneshot(req)
                .await
                .expect("answer");
            assert_eq!(res.status(), 200, "{name}: {probe} {path} with Host {host}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} probes");
}
