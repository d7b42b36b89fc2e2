//! Where profiles go, chosen once at start: an exporter given by hand,
//! local files, or uploads to Datadog when an agent is configured or answers
//! on `localhost:8126`. Without the `datadog` feature there are no uploads:
//! an exporter given by hand, or files.

#[cfg(feature = "datadog")]
use std::time::Duration;

#[cfg(feature = "datadog")]
use super::datadog::settings::{DatadogSettings, Endpoint, DEFAULT_AGENT_PORT};
#[cfg(feature = "datadog")]
use super::datadog::{DatadogExporter, ExporterParams, UploadCounters, PENDING_CAPACITY};
use super::{Export, FileExporter};
use crate::config::{ConfigError, Settings};

/// What the builder was told about the output.
pub(crate) struct Request<'a> {
    pub(crate) settings: &'a Settings,
    #[cfg(feature = "datadog")]
    pub(crate) datadog: &'a DatadogSettings,
    /// Uploads asked for (`true`) or refused (`false`); `None` decides by
    /// what is configured or found.
    #[cfg(feature = "datadog")]
    pub(crate) upload: Option<bool>,
    /// An exporter given by hand, which wins over everything else.
    pub(crate) exporter: Option<Box<dyn Export>>,
}

/// The exporter chosen, with its upload counters when it uploads.
pub(crate) struct Chosen {
    pub(crate) exporter: Box<dyn Export>,
    #[cfg(feature = "datadog")]
    pub(crate) upload: Option<UploadCounters>,
}

/// Where profiles go, once chosen.
enum Output {
    Exporter(Box<dyn Export>),
    Files(std::path::PathBuf),
    #[cfg(feature = "datadog")]
    Upload(Endpoint),
}

/// Chooses the output and starts its exporter (an upload thread for
/// Datadog). Fails on invalid Datadog settings.
pub(crate) fn open(request: Request<'_>) -> Result<Chosen, ConfigError> {
    #[cfg(feature = "datadog")]
    let (settings, datadog) = (request.settings, request.datadog);
    Ok(match choose(request)? {
        Output::Exporter(exporter) => Chosen {
            exporter,
            #[cfg(feature = "datadog")]
            upload: None,
        },
        Output::Files(prefix) => Chosen {
            exporter: Box::new(FileExporter::new(prefix)),
            #[cfg(feature = "datadog")]
            upload: None,
        },
        #[cfg(feature = "datadog")]
        Output::Upload(endpoint) => {
            let params = ExporterParams {
                interval: settings.flush_interval,
                settings_json: settings_json(
                    settings,
                    datadog,
                    &endpoint.to_string(),
                    endpoint.is_agentless(),
                ),
            };
            let exporter = DatadogExporter::start(datadog, endpoint, params)?;
            let counters = exporter.counters();
            Chosen {
                exporter: Box::new(exporter),
                upload: Some(counters),
            }
        }
    })
}

/// An exporter given by hand, files when a prefix is set or uploads are
/// off, an upload when configured or an agent is found, files otherwise.
#[cfg(feature = "datadog")]
fn choose(request: Request<'_>) -> Result<Output, ConfigError> {
    let Request {
        settings,
        datadog,
        upload,
        exporter,
    } = request;
    datadog.validate()?;
    if let Some(exporter) = exporter {
        return Ok(Output::Exporter(exporter));
    }
    if let Some(prefix) = &settings.output_pprof {
        return Ok(Output::Files(prefix.clone()));
    }
    if upload == Some(false) {
        return Ok(Output::Files(FileExporter::default_prefix()));
    }
    let endpoint = datadog.endpoint()?;
    let configured = upload == Some(true)
        || datadog.agentless == Some(true)
        || datadog.agent_configured()
        || matches!(endpoint, Endpoint::Socket { .. });
    if configured || agent_listens_on_localhost() {
        return Ok(Output::Upload(endpoint));
    }
    log::debug!("lockprof: no Datadog agent configured or found on localhost:8126; writing local files");
    Ok(Output::Files(FileExporter::default_prefix()))
}

/// An exporter given by hand, else files: under the prefix when one is set,
/// else the default one.
#[cfg(not(feature = "datadog"))]
fn choose(request: Request<'_>) -> Result<Output, ConfigError> {
    Ok(match (request.exporter, &request.settings.output_pprof) {
        (Some(exporter), _) => Output::Exporter(exporter),
        (None, Some(prefix)) => Output::Files(prefix.clone()),
        (None, None) => Output::Files(FileExporter::default_prefix()),
    })
}

/// Whether something accepts connections on `localhost:8126`. Loopback
/// answers (or refuses) at once; the timeout only bounds odd set-ups.
#[cfg(feature = "datadog")]
fn agent_listens_on_localhost() -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Ok(addrs) = ("localhost", DEFAULT_AGENT_PORT).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(100)).is_ok())
}

/// `info.profiler.settings` of every upload event.
#[cfg(feature = "datadog")]
fn settings_json(
    s: &Settings,
    datadog: &DatadogSettings,
    output: &str,
    agentless: bool,
) -> serde_json::Value {
    serde_json::json!({
        "enabled": true,
        "lock.enabled": true,
        "agentless": agentless,
        "output_pprof": s.output_pprof.as_ref().map(|p| p.display().to_string()),
        "upload_interval": s.flush_interval.as_secs_f64(),
        "capture_pct": s.capture_pct,
        "max_frames": s.max_frames,
        "api_timeout_ms": datadog.timeout().as_millis() as u64,
        "queue_capacity": s.queue_capacity,
        "upload_queue_capacity": PENDING_CAPACITY,
        "unwinder": format!("{:?}", s.unwinder),
        "output": output,
    })
}
