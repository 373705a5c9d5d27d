//! What the HTTP benchmarks (`ingest_http`, `dashboard`) share: the real
//! `driftwatch-collector` started on loopback with a fresh state directory and an admin
//! token, a small JSON client, the people who request and approve windows, and the
//! workload's windows requested and approved through the API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::workload;

/// Kills the collector when the benchmark ends, however it ends.
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The collector's API at `base`, answers read as JSON.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {answer}");
        }
        Ok(answer)
    }

    /// Issues a token for a person with `role`, as `admin`.
    pub async fn person(&self, admin: &str, name: &str, role: &str) -> anyhow::Result<String> {
        let issued = self
            .post(
                "/api/v1/tokens",
                Some(admin),
                &json!({"name": name, "role": role}),
            )
            .await?;
        Ok(issued["token"].as_str().context("a token")?.to_owned())
    }

    /// The workload's `windows` windows (for `hosts` hosts), each requested by `requester`
    /// and approved by `approver`.
    pub async fn approved_windows(
        &self,
        requester: &str,
        approver: &str,
        windows: usize,
        hosts: usize,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        for w in 0..windows {
            let request = serde_json::to_value(workload::window(w, windows, hosts, now))?;
            let window = self
                .post("/api/v1/windows", Some(requester), &request)
                .await?;
            let id = window["id"].as_str().context("a window id")?;
            self.post(
                &format!("/api/v1/windows/{id}/approve"),
                Some(approver),
                &json!({}),
            )
            .await?;
        }
        Ok(started.elapsed())
    }

    /// Enrolls host `h` of the workload with an enrollment `token` and sends its first
    /// heartbeat: its credential and its event chain.
    pub async fn enroll_host(
        &self,
        token: &str,
        h: usize,
    ) -> anyhow::Result<(String, workload::Chain)> {
        let enrolled = self
            .post(
                "/api/v1/enroll",
                None,
                &json!({"token": token, "hostname": format!("host-{h}"),
                        "labels": workload::labels(h), "agent_version": "bench"}),
            )
            .await?;
        let host_id = enrolled["host_id"].as_str().context("a host id")?.parse()?;
        let credential = enrolled["credential"]
            .as_str()
            .context("a credential")?
            .to_owned();
        let key = serde_json::from_value(enrolled["chain_key"].clone())
            .context("a chain key in the enrollment answer")?;
        self.post(
            "/api/v1/heartbeat",
            Some(&credential),
            &serde_json::to_value(workload::heartbeat(host_id))?,
        )
        .await?;
        Ok((credential, workload::Chain::new(host_id, key)))
    }
}

/// How a benchmark starts its collector.
pub struct Launch<'a> {
    /// TOML appended to the configuration (after `plain_http` and `state_dir`).
    pub extra_config: &'a str,
    /// Arguments before `serve` (e.g. `--log-format json`).
    pub global_args: &'a [&'a str],
    /// `DRIFTWATCH_LOG`.
    pub log_filter: &'a str,
    /// Where the collector's log goes.
    pub stderr: Stdio,
}

/// The collector running on 127.0.0.1, its API and the first admin token.
pub struct Started {
    pub collector: Running,
    pub api: Api,
    pub admin: String,
}

/// Writes a configuration under `dir`, creates the first admin token offline, starts
/// `bin` on an ephemeral loopback port and waits (at most a minute) for its address.
pub async fn start(bin: &str, dir: &Path, launch: Launch<'_>) -> anyhow::Result<Started> {
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "plain_http = true\nstate_dir = \"{}\"\n{}",
            dir.join("state").display(),
            launch.extra_config
        ),
    )?;
    let offline = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["token", "create", "--person", "root", "--role", "admin"])
        .output()?;
    if !offline.status.success() {
        bail!(
            "token create failed: {}",
            String::from_utf8_lossy(&offline.stderr)
        );
    }
    let admin = String::from_utf8(offline.stdout)?.trim().to_owned();
    let port_file = dir.join("port");
    let collector = Running(
        Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(launch.global_args)
            .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .env("DRIFTWATCH_LOG", launch.log_filter)
            .stdout(Stdio::null())
            .stderr(launch.stderr)
            .spawn()
            .with_context(|| format!("cannot start {bin}"))?,
    );
    let started = Instant::now();
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_owned();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the collector did not start within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let api = Api {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base: format!("http://{addr}"),
    };
    Ok(Started {
        collector,
        api,
        admin,
    })
}
