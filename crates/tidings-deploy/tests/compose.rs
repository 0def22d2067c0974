//! `deploy/compose.yaml`: the brokers on the loopback ports the tests and CI use, every
//! OrderFlow service in containers of its own (workers as replicas) running commands the
//! real parsers accept, the shared data volume, and `tidings dashboard` behind a token.

mod common;

use common::{queues, runs, strings, Runs, SERVICES};
use serde_json::Value;
use tidings_deploy::{interpolate_unset, load};

fn compose() -> Value {
    let docs = load("deploy/compose.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap_or_default()
}

#[test]
fn brokers_listen_where_the_tests_look() {
    let c = compose();
    for (svc, port) in [
        ("postgres", "127.0.0.1:5432:5432"),
        ("rabbitmq", "127.0.0.1:5672:5672"),
        ("rabbitmq", "127.0.0.1:15672:15672"),
        ("nats", "127.0.0.1:4222:4222"),
    ] {
        let ports = strings(&c["services"][svc]["ports"], svc);
        assert!(
            ports.contains(&port.to_string()),
            "{svc} publishes {port}: {ports:?}"
        );
    }
    assert_eq!(
        c["services"]["postgres"]["environment"]["POSTGRES_DB"],
        "test"
    );
    assert!(strings(&c["services"]["nats"]["command"], "nats").contains(&"-js".to_string()));
}

#[test]
fn every_service_runs_and_workers_have_replicas() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    let volumes = c["volumes"].as_object().expect("volumes");
    let mut seen = Vec::new();
    let mut api = 0;
    let mut dashboards = 0;
    for (name, svc) in services {
        let Some(cmd) = svc.get("command") else {
            continue;
        };
        let argv = strings(cmd, name);
        if !matches!(argv[0].as_str(), "orderflow-entrypoint" | "tidings") {
            continue;
        }
        let env = &svc["environment"];
        let url = interpolate_unset(env["TIDINGS_URL"].as_str().expect("TIDINGS_URL"));
        assert!(
            url.starts_with("postgres://postgres@postgres:5432/"),
            "{name}: {url}"
        );
        let mounts = strings(&svc["volumes"], name);
        assert!(
            mounts.contains(&"orderflow-data:/data".to_string()),
            "{name}: {mounts:?}"
        );
        assert!(volumes.contains_key("orderflow-data"));
        match runs(&argv, name) {
            Runs::OrderFlow(args) => {
                assert!(
                    !seen.contains(&args.service),
                    "{name}: {:?} twice",
                    args.service
                );
                seen.push(args.service);
                let ports = svc
                    .get("ports")
                    .map(|p| strings(p, name))
                    .unwrap_or_default();
                if args.no_api {
                    let replicas = svc["deploy"]["replicas"].as_u64().unwrap_or(1);
                    assert!(replicas >= 2, "{name}: a worker runs as replicas");
                    assert!(
                        ports.is_empty(),
                        "{name}: replicas cannot share a host port"
                    );
                } else {
                    api += 1;
                    assert_eq!(ports, ["127.0.0.1:8080:8080"], "{name}");
                }
                assert!(
                    !queues(args.service).is_empty(),
                    "{name}: consumes something"
                );
            }
            Runs::Tidings(opt) => {
                dashboards += 1;
                let tidings_cli::opt::Command::Dashboard(d) = opt.command else {
                    panic!("{name}: tidings runs `dashboard` here");
                };
                assert_eq!(d.bind.to_string(), "0.0.0.0:9090");
                // Passed through from the host, never written here; without it the
                // dashboard refuses 0.0.0.0.
                assert_eq!(env["TIDINGS_ADMIN_TOKEN"], "${TIDINGS_ADMIN_TOKEN-}");
                let db = env["TIDINGS_SAGA_DB"].as_str().expect("TIDINGS_SAGA_DB");
                let cfg = tidings::sqlite::SqliteConfig::from_url(db).expect("a sqlite URL");
                assert_eq!(cfg.path, std::path::Path::new("/data/orderflow.db"));
            }
        }
    }
    for s in SERVICES {
        assert!(seen.contains(&s), "no container runs {s:?}");
    }
    assert_eq!((api, dashboards), (1, 1));
}

#[test]
fn the_image_runs_what_the_files_name() {
    let root = tidings_deploy::repo_root();
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let dockerfile = read("deploy/Dockerfile");
    for want in [
        "cargo build --release --locked -p orderflow -p tidings-cli",
        "COPY deploy/orderflow-entrypoint.sh /usr/local/bin/orderflow-entrypoint",
        "STOPSIGNAL SIGINT",
        "ENTRYPOINT [\"tini\", \"-g\", \"--\"]",
        "ENV ORDERFLOW_DATA_DIR=/data",
    ] {
        assert!(dockerfile.contains(want), "deploy/Dockerfile: {want}");
    }
    let script = read("deploy/orderflow-entrypoint.sh");
    assert!(script.contains("exec orderflow serve --port \"${internal}\" \"$@\""));
    assert!(script.contains("\"TCP:127.0.0.1:${internal}\""));
    assert!(
        !root.join("docker-compose.yml").exists(),
        "one compose file: deploy/compose.yaml"
    );
}

/// The order placed in deploy/README.md parses and names products of OrderFlow's catalog.
#[test]
fn the_readme_places_a_valid_order() {
    let readme = std::fs::read_to_string(tidings_deploy::repo_root().join("deploy/README.md"))
        .expect("deploy/README.md");
    let body = readme
        .split("-d '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a curl -d '...' in deploy/README.md");
    let order =
        orderflow::api::parse_order(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
    for line in &order.lines {
        assert!(
            orderflow::system::CATALOG
                .iter()
                .any(|(id, ..)| *id == line.product_id),
            "{body}: {} is not in OrderFlow's catalog",
            line.product_id
        );
    }
}
