//! A real Prometheus server (Debian's `prometheus`) scraping a stack's services, and its HTTP
//! query API: what the metrics tests read the platform's counters through.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use orion_testkit::wait_until;
use serde_json::Value;

/// The example alerting rules operators are given.
pub const ALERT_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/alerts.yml"
);

/// How often the test server scrapes and evaluates rules.
const SCRAPE_INTERVAL: &str = "1s";

/// One sample of an instant query: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

/// A running `prometheus`, stopped on drop.
pub struct Prometheus {
    child: Child,
    address: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` in `dir` scraping `targets` (`job` = the service name) every second,
    /// with the shipped alert rules loaded. Fails clearly when the binary is missing.
    pub async fn start(dir: &Path, targets: &[(&str, SocketAddr)]) -> Result<Self> {
        let binary = which("prometheus").context(
            "`prometheus` is not installed: `apt-get install -y prometheus` (cargo xtask test does it)",
        )?;
        std::fs::create_dir_all(dir)?;
        let mut config = format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\nrule_files:\n  - {ALERT_RULES:?}\nscrape_configs:\n"
        );
        for (job, address) in targets {
            config.push_str(&format!(
                "  - job_name: {job:?}\n    static_configs:\n      - targets: [\"{address}\"]\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        // A free port can be taken by someone else before prometheus binds it: try again.
        let mut last_error = None;
        for _ in 0..3 {
            let address = free_port()?;
            let log = dir.join(format!("prometheus-{}.log", address.port()));
            let output = std::fs::File::create(&log)?;
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .stdin(Stdio::null())
                .stdout(output.try_clone()?)
                .stderr(output)
                .spawn()
                .context("starting prometheus")?;
            let mut server = Self {
                child,
                address,
                log,
            };
            match server.wait_ready(Duration::from_secs(30)).await {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("three tries"))
    }

    async fn wait_ready(&mut self, bound: Duration) -> Result<()> {
        let url = format!("http://{}/-/ready", self.address);
        let child = &mut self.child;
        let ready = wait_until("prometheus ready", bound, || {
            let exited = child.try_wait();
            let url = &url;
            async move {
                match exited {
                    Ok(None) => get(url).await.is_ok().then_some(Ok(())),
                    Ok(Some(status)) => Some(Err(anyhow!("prometheus exited ({status})"))),
                    Err(e) => Some(Err(e.into())),
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("{e}:\n{}", self.log_text()),
            Err(e) => bail!("{e}:\n{}", self.log_text()),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query through `/api/v1/query`.
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>> {
        let url = format!("http://{}/api/v1/query", self.address);
        let expr = expr.to_string();
        let body = tokio::task::spawn_blocking(move || -> Result<String> {
            Ok(ureq::get(&url)
                .query("query", &expr)
                .call()?
                .into_body()
                .read_to_string()?)
        })
        .await??;
        let answer: Value = serde_json::from_str(&body)?;
        if answer["status"] != "success" {
            bail!("query failed: {answer}");
        }
        answer["data"]["result"]
            .as_array()
            .context("a vector result")?
            .iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .context("a sample value")?
                    .parse::<f64>()?;
                Ok(Sample {
                    labels: sample["metric"].as_object().cloned().unwrap_or_default(),
                    value,
                })
            })
            .collect()
    }

    /// Waits up to `bound` until `expr` returns a sample, and returns the samples.
    pub async fn wait_for(&self, expr: &str, bound: Duration) -> Result<Vec<Sample>> {
        let what = format!("a sample of {expr}");
        wait_until(&what, bound, || async {
            let samples = self.query(expr).await;
            samples.map(|s| (!s.is_empty()).then_some(s)).transpose()
        })
        .await?
    }

    /// The loaded rule groups (`/api/v1/rules`).
    pub async fn rules(&self) -> Result<Value> {
        let body = get(&format!("http://{}/api/v1/rules", self.address)).await?;
        Ok(serde_json::from_str(&body)?)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`; the status and body, any status (a 503 is an answer, not an error).
pub async fn get_status(url: &str) -> Result<(u16, String)> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || -> Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

/// GET `url`; the body of a 2xx answer.
async fn get(url: &str) -> Result<String> {
    let (status, body) = get_status(url).await?;
    if !(200..300).contains(&status) {
        bail!("GET {url}: {status} {body}");
    }
    Ok(body)
}

fn free_port() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(binary))
        .find(|path| path.is_file())
}
