//! PostgreSQL over TLS: a throw-away cluster (`initdb`, `ssl=on`, an openssl-made server
//! certificate, a free port) that accepts TCP connections only over TLS (`hostssl` in
//! `pg_hba.conf`, `hostnossl … reject`). `initdb` refuses to run as root: as root, the
//! cluster is made and run as the `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{free_port, make_certs, queue, round_trip, run, skip, tool, wait_listening};

/// The directory of PostgreSQL's server binaries (`initdb`, `pg_ctl`), newest first.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when we are root.
fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let exe = bin.join(program);
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

/// A running throw-away cluster; stopped (immediate) on drop.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl", self.as_postgres)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn start_cluster(dir: &Path, bin: PathBuf, as_postgres: bool) -> Cluster {
    let data = dir.join("data");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    make_certs(&certs);
    if as_postgres {
        // The server runs as `postgres`: it must own its directory and its key (0600).
        run(
            Command::new("chown").args(["-R", "postgres:"]).arg(dir),
            "chown the cluster's directory to postgres",
        );
    }
    run(
        Command::new("chmod").arg("600").arg(certs.join("key.pem")),
        "chmod 600 key.pem",
    );
    run(
        pg_command(&bin, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]),
        "initdb",
    );
    let port = free_port();
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
         ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\nfsync = off\n",
        dir = dir.display(),
        cert = certs.join("cert.pem").display(),
        key = certs.join("key.pem").display(),
    );
    append(&data.join("postgresql.conf"), &conf);
    // TCP only over TLS: a plain connection is rejected, so a working one proves TLS.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    )
    .expect("write pg_hba.conf");
    let log = dir.join("server.log");
    let cluster = Cluster {
        bin: bin.clone(),
        data: data.clone(),
        as_postgres,
        port,
    };
    run(
        pg_command(&bin, "pg_ctl", as_postgres)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]),
        "pg_ctl start",
    );
    wait_listening(port, "PostgreSQL", Some(&log));
    cluster
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes())
        .expect("append postgresql.conf");
}

/// `tidings::connect(url)` within 60 s; the error's text if it fails.
async fn connect(url: &str) -> Result<std::sync::Arc<dyn tidings::transport::Transport>, String> {
    match tokio::time::timeout(Duration::from_secs(60), tidings::connect(url)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("no answer within 60 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_require_verify_full_and_wrong_ca() {
    if !tool("openssl") {
        return;
    }
    let Some(bin) = pg_bin() else {
        skip("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql");
        return;
    };
    let as_postgres = is_root();
    if as_postgres && !tool("runuser") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("tidings-pg-tls")
        .tempdir()
        .expect("tempdir");
    let cluster = start_cluster(dir.path(), bin, as_postgres);
    let base = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let certs = dir.path().join("certs");

    // Encrypted, server certificate not checked.
    let t = connect(&format!("{base}?sslmode=require"))
        .await
        .expect("sslmode=require");
    round_trip(&t, &queue("pg_require")).await;
    t.close().await.expect("close");

    // Encrypted, certificate checked against our CA and the host name (IP SAN).
    let ca = certs.join("ca.pem");
    let t = connect(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await
    .expect("sslmode=verify-full with the right CA");
    round_trip(&t, &queue("pg_verify")).await;
    t.close().await.expect("close");

    // The wrong CA: refused, and the error says it is the certificate.
    let wrong = certs.join("other-ca.pem");
    let err = connect(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        wrong.display()
    ))
    .await
    .err()
    .expect("verify-full with the wrong CA must be refused");
    eprintln!("wrong CA refused: {err}");
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "the error should say the certificate is not trusted: {err}"
    );

    // The server takes TCP connections only over TLS.
    let err = connect(&format!("{base}?sslmode=disable"))
        .await
        .err()
        .expect("sslmode=disable must be refused by a hostssl-only server");
    eprintln!("plain connection refused: {err}");
}
