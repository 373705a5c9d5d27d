//! Client certificates: with `[tls] client_ca`, agents must present a certificate from that
//! CA whose DNS name is their enrolled hostname. Performed against the real collector over
//! TLS on loopback: no certificate, a certificate from another CA, host A's certificate with
//! host B's credential (and enrollment), and the right one.

use std::path::Path;

use driftwatch_tests::collector::Collector;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::{Certificate, Identity};
use serde_json::{Value, json};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// `(certificate PEM, key PEM)` for `name`.
    fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn client(server_ca: &str, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([Certificate::from_pem(server_ca.as_bytes()).unwrap()])
        .timeout(std::time::Duration::from_secs(20));
    if let Some((cert, key)) = identity {
        builder = builder.identity(Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn heartbeat(host_id: &str) -> Value {
    json!({
        "host_id": host_id,
        "sent_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "inventory": {"hostname": "h", "os": "linux", "kernel": "6", "uptime_secs": 1, "cpus": 1, "memory_bytes": 1},
        "health": {"agent_version": "e2e", "cpu_percent": 0.0, "rss_bytes": 1, "spool_depth": 0, "spool_full": false,
                   "baseline_entries": 0, "baseline_tampered": false,
                   "coverage": {"dropped_event_batches": 0, "unreadable": 0}},
        "last_seq": 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_need_a_client_certificate_naming_their_host() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new();
    let (server_cert, server_key) = server_ca.leaf("127.0.0.1");
    let agents_ca = Ca::new();
    let cert_a = agents_ca.leaf("web-a");
    let cert_b = agents_ca.leaf("web-b");
    let stranger_a = Ca::new().leaf("web-a");
    let tls = format!(
        "cert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        write(dir.path(), "server.crt", &server_cert),
        write(dir.path(), "server.key", &server_key),
        write(dir.path(), "agents-ca.pem", &agents_ca.pem()),
    );
    let collector = Collector::start_tls(&tls, "");
    let admin = collector.token("admin", "root");
    let url = |path: &str| format!("https://{}{path}", collector.addr);
    let ca = server_ca.pem();
    let (no_cert, with_a, with_b, with_stranger) = (
        client(&ca, None),
        client(&ca, Some(&cert_a)),
        client(&ca, Some(&cert_b)),
        client(&ca, Some(&stranger_a)),
    );

    // People need no certificate (driftctl keeps working).
    let (status, issued) = post(
        &no_cert,
        &url("/api/v1/enrollment-tokens"),
        Some(&admin),
        &json!({"uses": 5}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{issued}");
    let enroll = |hostname: &str| json!({"token": issued["token"], "hostname": hostname, "agent_version": "e2e"});

    // No certificate: refused.
    let (status, body) = post(&no_cert, &url("/api/v1/enroll"), None, &enroll("web-a"))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("client_certificate_required")),
        "{body}"
    );
    // A certificate from another CA: the handshake itself fails.
    let refused = post(
        &with_stranger,
        &url("/api/v1/enroll"),
        None,
        &enroll("web-a"),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // Host A's certificate cannot enroll host B.
    let (status, body) = post(&with_a, &url("/api/v1/enroll"), None, &enroll("web-b"))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("client_certificate_mismatch")),
        "{body}"
    );

    // The right certificates enroll.
    let (status, a) = post(&with_a, &url("/api/v1/enroll"), None, &enroll("web-a"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{a}");
    let (status, b) = post(&with_b, &url("/api/v1/enroll"), None, &enroll("web-b"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{b}");
    let (cred_a, host_a) = (
        a["credential"].as_str().unwrap(),
        a["host_id"].as_str().unwrap(),
    );
    let (cred_b, host_b) = (
        b["credential"].as_str().unwrap(),
        b["host_id"].as_str().unwrap(),
    );

    // Host A's certificate with host B's credential: refused, and logged.
    let (status, body) = post(
        &with_a,
        &url("/api/v1/heartbeat"),
        Some(cred_b),
        &heartbeat(host_b),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("client_certificate_mismatch")),
        "{body}"
    );
    let (status, body) = post(
        &with_a,
        &url("/api/v1/events"),
        Some(cred_b),
        &json!({"events": []}),
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    // A credential without a certificate: refused.
    let (status, body) = post(
        &no_cert,
        &url("/api/v1/heartbeat"),
        Some(cred_a),
        &heartbeat(host_a),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("client_certificate_required")),
        "{body}"
    );
    // The right pair is accepted.
    let (status, body) = post(
        &with_a,
        &url("/api/v1/heartbeat"),
        Some(cred_a),
        &heartbeat(host_a),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &with_b,
        &url("/api/v1/heartbeat"),
        Some(cred_b),
        &heartbeat(host_b),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    let log = collector.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("client certificate is not for this host")
            && l.contains("web-b")
            && l.contains("127.0.0.1")),
        "{log}"
    );
}

#[test]
fn the_real_agent_enrolls_and_reports_with_its_certificate() {
    use driftwatch_tests::daemon::{DaemonHost, wait_until};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new();
    let (server_cert, server_key) = server_ca.leaf("127.0.0.1");
    let agents_ca = Ca::new();
    let mine = agents_ca.leaf(&hostname);
    let other = agents_ca.leaf("not-this-host");
    let tls = format!(
        "cert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        write(dir.path(), "server.crt", &server_cert),
        write(dir.path(), "server.key", &server_key),
        write(dir.path(), "agents-ca.pem", &agents_ca.pem()),
    );
    let collector = Collector::start_tls(&tls, "");
    let admin = collector.token("admin", "root");
    let base = format!("https://{}", collector.addr);
    let people = client(&server_ca.pem(), None);
    let (status, issued) = runtime
        .block_on(post(
            &people,
            &format!("{base}/api/v1/enrollment-tokens"),
            Some(&admin),
            &json!({"uses": 2}),
        ))
        .unwrap();
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let ca_file = write(dir.path(), "server-ca.pem", &server_ca.pem());
    let agent_config = |name: &str, (cert, key): &(String, String)| {
        format!(
            "[collector]\nca_file = \"{ca_file}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            write(dir.path(), &format!("{name}.pem"), cert),
            write(dir.path(), &format!("{name}.key"), key),
        )
    };

    // A certificate for another name cannot enroll this host.
    let wrong = DaemonHost::new(Some(&base), &agent_config("other", &other));
    wrong.init();
    let run = wrong.cli(["enroll", "--token", &token]).run();
    assert_ne!(run.code(), 0, "{}", run.stderr);
    assert!(run.stderr.contains("403"), "{}", run.stderr);

    // The right one enrolls, and the daemon's events arrive.
    let host = DaemonHost::new(Some(&base), &agent_config("mine", &mine));
    host.init();
    host.cli(["enroll", "--token", &token])
        .run()
        .expect(driftwatch_tests::EXIT_CLEAN);
    let daemon = host.start();
    host.host.write("etc/app.conf", "port = 81\n");
    let drift = || -> usize {
        runtime.block_on(async {
            let Ok(response) = people
                .get(format!("{base}/api/v1/drift"))
                .bearer_auth(&admin)
                .send()
                .await
            else {
                return 0;
            };
            let items: Value = response.json().await.unwrap_or(Value::Null);
            items.as_array().map_or(0, Vec::len)
        })
    };
    let arrived = wait_until(std::time::Duration::from_secs(30), || drift() > 0);
    assert!(
        arrived,
        "no drift arrived over mutual TLS\nagent log:\n{}\ncollector log:\n{}",
        daemon.log(),
        collector.log()
    );
    daemon.stop();
}
