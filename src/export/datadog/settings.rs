//! Datadog settings: the `DD_*` variables every Datadog library reads, and
//! where they send profiles.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{env_var, parse_bool, ConfigError};

/// Default timeout of one upload request.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_millis(10_000);
/// The longest API timeout, from the builder or `DD_PROFILING_API_TIMEOUT_MS`.
const MAX_API_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default Datadog site for agentless uploads.
pub const DEFAULT_SITE: &str = "datadoghq.com";
/// The agent's Unix socket, used when it exists and nothing else is set.
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/datadog/apm.socket";
/// Default agent host and port.
pub(crate) const DEFAULT_AGENT_HOST: &str = "localhost";
/// Default agent port.
pub(crate) const DEFAULT_AGENT_PORT: u16 = 8126;

const AGENT_PATH: &str = "/profiling/v1/input";

/// A Datadog API key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where and how profiles are uploaded to Datadog, and the tags they carry.
///
/// Every field is `None` until set by a builder method or its environment
/// variable; a value set by a builder method is never replaced by the
/// environment. `Debug` never shows the API key.
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DatadogSettings {
    /// `DD_SERVICE`; default: the executable's name.
    pub service: Option<String>,
    /// `DD_ENV`.
    pub env: Option<String>,
    /// `DD_VERSION`.
    pub version: Option<String>,
    /// `DD_TAGS`: `k:v` tags added to every profile.
    pub tags: Option<Vec<String>>,
    /// `DD_PROFILING_TAGS`: more `k:v` tags, for profiles only.
    pub profiling_tags: Option<Vec<String>>,
    /// `DD_TRACE_AGENT_URL`: `http://…`, `https://…` or `unix:///path`.
    pub agent_url: Option<String>,
    /// `DD_AGENT_HOST` (default `localhost`).
    pub agent_host: Option<String>,
    /// `DD_TRACE_AGENT_PORT` (default 8126).
    pub agent_port: Option<u16>,
    /// `DD_PROFILING_AGENTLESS`: upload straight to the intake (needs a key).
    pub agentless: Option<bool>,
    /// `DD_API_KEY`.
    pub api_key: Option<ApiKey>,
    /// `DD_SITE` (default `datadoghq.com`).
    pub site: Option<String>,
    /// `DD_PROFILING_API_TIMEOUT_MS` (default 10000).
    pub api_timeout: Option<Duration>,
    /// `DD_PROFILING_LOCK_UPLOAD_CAUSED_WAIT` (default false): uploads carry
    /// lockprof's `lock-caused-wait` sample type and its `stack id` labels
    /// too. Off, an upload has exactly the four sample types of Datadog's
    /// lock profile; local files always carry them.
    pub upload_caused_wait: Option<bool>,
}

impl std::fmt::Debug for DatadogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSettings")
            .field("service", &self.service)
            .field("env", &self.env)
            .field("version", &self.version)
            .field("tags", &self.tags)
            .field("profiling_tags", &self.profiling_tags)
            .field("agent_url", &self.agent_url)
            .field("agent_host", &self.agent_host)
            .field("agent_port", &self.agent_port)
            .field("agentless", &self.agentless)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("site", &self.site)
            .field("api_timeout", &self.api_timeout)
            .field("upload_caused_wait", &self.upload_caused_wait)
            .finish()
    }
}

/// Where one upload goes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// An agent over TCP: the full URL of its profiling endpoint.
    Agent { url: String },
    /// An agent on a Unix socket.
    Socket { path: PathBuf },
    /// The intake, with the API key.
    Agentless { url: String, key: ApiKey },
}

impl Endpoint {
    /// The URL the request line uses (a Unix socket still needs one).
    pub(crate) fn url(&self) -> String {
        match self {
            Endpoint::Agent { url } | Endpoint::Agentless { url, .. } => url.clone(),
            Endpoint::Socket { .. } => format!("http://localhost{AGENT_PATH}"),
        }
    }

    pub(crate) fn is_agentless(&self) -> bool {
        matches!(self, Endpoint::Agentless { .. })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.url().starts_with("https://")
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Agent { url } => write!(f, "agent at {url}"),
            Endpoint::Socket { path } => write!(f, "agent at unix://{}{AGENT_PATH}", path.display()),
            Endpoint::Agentless { url, .. } => write!(f, "agentless intake at {url}"),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl DatadogSettings {
    /// Whether an agent location was given (URL, host or port): then the
    /// profiler uploads without probing for an agent first.
    pub(crate) fn agent_configured(&self) -> bool {
        self.agent_url.is_some() || self.agent_host.is_some() || self.agent_port.is_some()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.api_timeout.unwrap_or(DEFAULT_API_TIMEOUT)
    }

    /// Checks every value; the first bad one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.agent_url {
            parse_agent_url("agent_url", url)?;
        }
        if let Some(host) = &self.agent_host {
            check_host("agent_host", host)?;
        }
        if self.agent_port == Some(0) {
            return Err(ConfigError::new(
                "agent_port",
                "0",
                "expected a port from 1 to 65535",
            ));
        }
        if let Some(site) = &self.site {
            check_site("site", site)?;
        }
        if let Some(t) = self.api_timeout {
            if !(Duration::from_millis(1)..=MAX_API_TIMEOUT).contains(&t) {
                return Err(ConfigError::new(
                    "api_timeout",
                    format!("{t:?}"),
                    "expected 1ms to 1 hour (3600s)",
                ));
            }
        }
        if self.agentless == Some(true) && self.api_key.as_ref().is_none_or(|k| k.0.is_empty()) {
            return Err(ConfigError::new(
                "DD_API_KEY",
                "",
                "DD_PROFILING_AGENTLESS is true but no API key is set; set DD_API_KEY or turn agentless off",
            ));
        }
        Ok(())
    }

    /// The endpoint, resolved as Datadog's libraries do: agentless when asked
    /// (with a key), else `DD_TRACE_AGENT_URL`, else host and port when either
    /// is set, else the agent's socket when it exists, else
    /// `http://localhost:8126`.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        self.endpoint_with_socket(Path::new(DEFAULT_AGENT_SOCKET))
    }

    pub(crate) fn endpoint_with_socket(&self, socket: &Path) -> Result<Endpoint, ConfigError> {
        self.validate()?;
        if self.agentless == Some(true) {
            if let Some(key) = &self.api_key {
                let site = self.site.as_deref().unwrap_or(DEFAULT_SITE);
                return Ok(Endpoint::Agentless {
                    url: agentless_url("site", site)?,
                    key: key.clone(),
                });
            }
        }
        if let Some(url) = &self.agent_url {
            return parse_agent_url("agent_url", url);
        }
        if self.agent_host.is_some() || self.agent_port.is_some() {
            let host = self.agent_host.as_deref().unwrap_or(DEFAULT_AGENT_HOST);
            let port = self.agent_port.unwrap_or(DEFAULT_AGENT_PORT);
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            return Ok(Endpoint::Agent {
                url: format!("http://{host}:{port}{AGENT_PATH}"),
            });
        }
        if socket.exists() {
            return Ok(Endpoint::Socket {
                path: socket.to_owned(),
            });
        }
        Ok(Endpoint::Agent {
            url: format!("http://{DEFAULT_AGENT_HOST}:{DEFAULT_AGENT_PORT}{AGENT_PATH}"),
        })
    }

    /// Reads the `DD_*` variables into fields not set yet. Every bad value is
    /// returned and leaves that field unset.
    pub(crate) fn fill_from_env(&mut self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut read = |name: &str| match env_var(name) {
            Ok(v) => v,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let service = read("DD_SERVICE");
        let env = read("DD_ENV");
        let version = read("DD_VERSION");
        let tags = read("DD_TAGS");
        let profiling_tags = read("DD_PROFILING_TAGS");
        let agent_url = read("DD_TRACE_AGENT_URL");
        let agent_host = read("DD_AGENT_HOST");
        let agent_port = read("DD_TRACE_AGENT_PORT");
        let agentless = read("DD_PROFILING_AGENTLESS");
        let api_key = read("DD_API_KEY");
        let site = read("DD_SITE");
        let timeout = read("DD_PROFILING_API_TIMEOUT_MS");
        let caused_wait = read("DD_PROFILING_LOCK_UPLOAD_CAUSED_WAIT");

        fill(&mut self.service, service.map(Ok), &mut errors);
        fill(&mut self.env, env.map(Ok), &mut errors);
        fill(&mut self.version, version.map(Ok), &mut errors);
        fill(
            &mut self.tags,
            tags.map(|v| Ok(parse_tags("DD_TAGS", &v))),
            &mut errors,
        );
        fill(
            &mut self.profiling_tags,
            profiling_tags.map(|v| Ok(parse_tags("DD_PROFILING_TAGS", &v))),
            &mut errors,
        );
        fill(
            &mut self.agent_url,
            agent_url.map(|v| parse_agent_url("DD_TRACE_AGENT_URL", &v).map(|_| v)),
            &mut errors,
        );
        fill(
            &mut self.agent_host,
            agent_host.map(|v| check_host("DD_AGENT_HOST", &v).map(|()| v)),
            &mut errors,
        );
        fill(
            &mut self.agent_port,
            agent_port.map(|v| match v.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(ConfigError::new(
                    "DD_TRACE_AGENT_PORT",
                    v,
                    "expected a port from 1 to 65535",
                )),
            }),
            &mut errors,
        );
        fill(
            &mut self.agentless,
            agentless.map(|v| parse_bool("DD_PROFILING_AGENTLESS", &v)),
            &mut errors,
        );
        fill(&mut self.api_key, api_key.map(|v| Ok(ApiKey(v))), &mut errors);
        fill(
            &mut self.upload_caused_wait,
            caused_wait.map(|v| parse_bool("DD_PROFILING_LOCK_UPLOAD_CAUSED_WAIT", &v)),
            &mut errors,
        );
        fill(
            &mut self.site,
            site.map(|v| check_site("DD_SITE", &v).map(|()| v)),
            &mut errors,
        );
        fill(
            &mut self.api_timeout,
            timeout.map(|v| match v.parse::<u64>() {
                Ok(ms) if (1..=MAX_API_TIMEOUT.as_millis() as u64).contains(&ms) => {
                    Ok(Duration::from_millis(ms))
                }
                _ => Err(ConfigError::new(
                    "DD_PROFILING_API_TIMEOUT_MS",
                    v,
                    "expected milliseconds, from 1 to 3600000",
                )),
            }),
            &mut errors,
        );
        errors
    }
}

fn fill<T>(field: &mut Option<T>, value: Option<Result<T, ConfigError>>, errors: &mut Vec<ConfigError>) {
    match value {
        Some(Ok(v)) if field.is_none() => *field = Some(v),
        Some(Err(e)) => errors.push(e),
        _ => {}
    }
}

/// Parses `k:v` tags separated by commas (or by spaces when there is no
/// comma). Malformed ones (empty, leading or trailing `:`) are logged and
/// left out; the rest are kept.
pub(crate) fn parse_tags(name: &str, value: &str) -> Vec<String> {
    let items: Vec<&str> = if value.contains(',') {
        value.split(',').map(str::trim).collect()
    } else {
        value.split_whitespace().collect()
    };
    clean_tags(name, items)
}

pub(crate) fn clean_tags<'a>(name: &str, items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut tags = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() || item.starts_with(':') || item.ends_with(':') {
            log::warn!("lockprof: {name}: ignoring malformed tag {item:?} (expected key:value)");
        } else {
            tags.push(item.to_owned());
        }
    }
    tags
}

fn parse_agent_url(name: &str, value: &str) -> Result<Endpoint, ConfigError> {
    let bad = |why: &str| ConfigError::new(name, value, why);
    if let Some(path) = value.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(bad("expected unix:///absolute/path/to/socket"));
        }
        return Ok(Endpoint::Socket {
            path: PathBuf::from(path),
        });
    }
    let url = reqwest::Url::parse(value).map_err(|e| bad(&format!("not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        _ => return Err(bad("expected a URL starting with http://, https:// or unix://")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(bad("expected scheme://host:port with no credentials or query"));
    }
    Ok(Endpoint::Agent {
        url: format!("{}{AGENT_PATH}", value.trim_end_matches('/')),
    })
}

fn check_host(name: &str, host: &str) -> Result<(), ConfigError> {
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(name, host, "expected a host name or IP address"))
    }
}

fn check_site(name: &str, site: &str) -> Result<(), ConfigError> {
    if site.contains("://") {
        // Never taken as the URL: the API key goes over https only.
        return Err(ConfigError::new(
            name,
            site,
            "expected a Datadog site such as datadoghq.eu, not a URL: agentless uploads always go to https://intake.profile.<site>",
        ));
    }
    let ok = site.contains('.')
        && site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            name,
            site,
            "expected a Datadog site such as datadoghq.eu",
        ))
    }
}

/// The intake URL for `site`: https, on the host `intake.profile.<site>`, or
/// an error. The API key travels with every agentless request, so no site
/// may turn this into plain http or another host.
fn agentless_url(name: &str, site: &str) -> Result<String, ConfigError> {
    check_site(name, site)?;
    let url = format!("https://intake.profile.{site}/api/v2/profile");
    let expected_host = format!("intake.profile.{}", site.to_ascii_lowercase());
    match reqwest::Url::parse(&url) {
        Ok(u)
            if u.scheme() == "https"
                && u.host_str() == Some(expected_host.as_str())
                && u.port().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Ok(url)
        }
        _ => Err(ConfigError::new(
            name,
            site,
            "does not make an https intake URL; expected a Datadog site such as datadoghq.eu",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_on_commas_or_spaces_and_malformed_ones_dropped() {
        assert_eq!(parse_tags("DD_TAGS", "a:1, b:2,,:x,y:"), ["a:1", "b:2"]);
        assert_eq!(parse_tags("DD_TAGS", "a:1  b:2 c"), ["a:1", "b:2", "c"]);
    }

    #[test]
    fn agent_urls_with_unknown_schemes_are_refused() {
        assert!(parse_agent_url("X", "ftp://host").is_err());
        assert!(parse_agent_url("X", "unix://relative").is_err());
        assert_eq!(
            parse_agent_url("X", "http://h:1/").unwrap(),
            Endpoint::Agent {
                url: "http://h:1/profiling/v1/input".into()
            }
        );
    }

    fn agentless(site: Option<&str>, agent_url: Option<&str>) -> Result<Endpoint, ConfigError> {
        DatadogSettings {
            agentless: Some(true),
            api_key: Some(ApiKey::new("k")),
            site: site.map(str::to_owned),
            agent_url: agent_url.map(str::to_owned),
            agent_host: agent_url.map(|_| "127.0.0.1".to_owned()),
            agent_port: agent_url.map(|_| 8126),
            ..DatadogSettings::default()
        }
        .endpoint_with_socket(Path::new("/nonexistent/lockprof-test.sock"))
    }

    #[test]
    fn every_agentless_endpoint_is_https_on_the_intake_host() {
        let sites = [
            None,
            Some("datadoghq.com"),
            Some("datadoghq.eu"),
            Some("us3.datadoghq.com"),
            Some("ddog-gov.com"),
            Some("DataDogHQ.EU"),
        ];
        let agents = [None, Some("http://127.0.0.1:8126"), Some("unix:///tmp/a.sock")];
        for site in sites {
            for agent in agents {
                let endpoint = agentless(site, agent).unwrap();
                let Endpoint::Agentless { url, .. } = &endpoint else {
                    panic!("{site:?} {agent:?}: not agentless: {endpoint}");
                };
                let site = site.unwrap_or(DEFAULT_SITE);
                assert_eq!(url, &format!("https://intake.profile.{site}/api/v2/profile"));
                assert!(endpoint.is_https());
            }
        }
    }

    #[test]
    fn a_site_that_is_a_url_or_more_than_a_host_is_refused() {
        for site in [
            "http://evil.example",
            "https://datadoghq.eu",
            "HTTP://evil.example",
            "evil.example:80",
            "evil.example/path",
            "user@evil.example",
            "datadoghq.com#@evil.example",
            "datadoghq.com?x=.y",
            "evil example.com",
            "datadoghq",
            "",
        ] {
            let e = agentless(Some(site), None).unwrap_err();
            assert_eq!((e.name.as_str(), e.value.as_str()), ("site", site));
            let e = agentless_url("DD_SITE", site).unwrap_err();
            assert_eq!((e.name.as_str(), e.value.as_str()), ("DD_SITE", site));
        }
        let e = check_site("DD_SITE", "http://evil.example").unwrap_err();
        assert!(e.to_string().contains("not a URL"), "{e}");
        assert!(e.to_string().contains("https://intake.profile.<site>"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_api_key() {
        let s = DatadogSettings {
            api_key: Some(ApiKey::new("secret-key-123")),
            ..DatadogSettings::default()
        };
        assert!(!format!("{s:?}").contains("secret-key-123"));
        let e = Endpoint::Agentless {
            url: "https://x".into(),
            key: ApiKey::new("secret-key-123"),
        };
        assert!(!format!("{e:?} {e}").contains("secret-key-123"));
    }
}
