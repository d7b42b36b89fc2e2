//! Where the on-demand endpoint listens: the builder's `serve` and
//! `serve_non_loopback`, and their variables.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::{env_var, parse_bool, ConfigError};

/// The longest window a request may ask for (`?seconds=3600`): an hour.
pub const MAX_WINDOW_SECONDS: u64 = 3600;

/// The variable that starts the endpoint.
pub(crate) const SERVE_VAR: &str = "DD_PROFILING_LOCK_SERVE";
/// The variable that allows an address other than loopback.
pub(crate) const NON_LOOPBACK_VAR: &str = "DD_PROFILING_LOCK_SERVE_NON_LOOPBACK";

/// Where the on-demand endpoint listens (feature `http`).
///
/// Both fields are `None` until set by a builder method or their variable;
/// a value set by a builder method is never replaced by the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeSettings {
    /// `DD_PROFILING_LOCK_SERVE`: an IP address and port (`127.0.0.1:6061`,
    /// `[::1]:6061`, `localhost:6061`; port 0 picks a free one). Unset: no
    /// endpoint.
    pub addr: Option<String>,
    /// `DD_PROFILING_LOCK_SERVE_NON_LOOPBACK` (default false): allows an
    /// address other than loopback. The endpoint has no authentication:
    /// anyone who reaches the port can read the lock names and call stacks.
    pub non_loopback: Option<bool>,
}

impl ServeSettings {
    /// The address to listen on, checked; `name` is the setting or variable
    /// the address came from, for the error. `None`: no endpoint.
    pub(crate) fn socket_addr(&self, name: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(value) = &self.addr else {
            return Ok(None);
        };
        let addr = parse_addr(name, value)?;
        if !addr.ip().is_loopback() && self.non_loopback != Some(true) {
            return Err(ConfigError::new(
                name,
                value.as_str(),
                format!(
                    "not a loopback address, and the endpoint has no authentication: \
                     to serve on it anyway, set {NON_LOOPBACK_VAR}=true (or call serve_non_loopback(true))"
                ),
            ));
        }
        Ok(Some(addr))
    }

    /// Reads the variables into fields not set yet. Every bad value is
    /// returned and leaves its field unset.
    pub(crate) fn fill_from_env(&mut self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.non_loopback.is_none() {
            match env_var(NON_LOOPBACK_VAR)
                .and_then(|v| v.map(|v| parse_bool(NON_LOOPBACK_VAR, &v)).transpose())
            {
                Ok(v) => self.non_loopback = v,
                Err(e) => errors.push(e),
            }
        }
        if self.addr.is_none() {
            match env_var(SERVE_VAR) {
                Ok(Some(v)) => {
                    let from_env = ServeSettings {
                        addr: Some(v),
                        non_loopback: self.non_loopback,
                    };
                    match from_env.socket_addr(SERVE_VAR) {
                        Ok(_) => self.addr = from_env.addr,
                        Err(e) => errors.push(e),
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        errors
    }
}

const ADDR_FORMAT: &str =
    "expected an IP address and port, such as 127.0.0.1:6061, [::1]:6061 or localhost:6061";

/// `ip:port`, `[ipv6]:port` or `localhost:port`; no name is looked up.
fn parse_addr(name: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match value.strip_prefix("localhost:").map(str::parse::<u16>) {
        Some(Ok(port)) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => Err(ConfigError::new(name, value, ADDR_FORMAT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(addr: &str, non_loopback: Option<bool>) -> ServeSettings {
        ServeSettings {
            addr: Some(addr.to_owned()),
            non_loopback,
        }
    }

    #[test]
    fn loopback_addresses_are_taken_as_given() {
        for (given, expected) in [
            ("127.0.0.1:6061", "127.0.0.1:6061"),
            ("localhost:0", "127.0.0.1:0"),
            ("[::1]:6061", "[::1]:6061"),
            ("127.8.9.10:80", "127.8.9.10:80"),
        ] {
            let addr = settings(given, None).socket_addr("serve").unwrap();
            assert_eq!(addr.map(|a| a.to_string()).as_deref(), Some(expected));
        }
        assert_eq!(ServeSettings::default().socket_addr("serve"), Ok(None));
    }

    #[test]
    fn other_addresses_need_the_explicit_opt_in() {
        let err = settings("0.0.0.0:6061", None).socket_addr("serve").unwrap_err();
        assert_eq!((err.name.as_str(), err.value.as_str()), ("serve", "0.0.0.0:6061"));
        assert!(err.reason.contains("no authentication"), "{err}");
        assert!(err.reason.contains(NON_LOOPBACK_VAR), "{err}");
        assert!(settings("0.0.0.0:6061", Some(false))
            .socket_addr("serve")
            .is_err());
        assert!(settings("0.0.0.0:6061", Some(true)).socket_addr("serve").is_ok());
        assert!(settings("[::]:6061", Some(true)).socket_addr("serve").is_ok());
    }

    #[test]
    fn malformed_addresses_say_what_to_type() {
        for bad in [
            "6061",
            ":6061",
            "localhost",
            "example.com:80",
            "127.0.0.1:99999",
            "localhost:x",
        ] {
            let err = settings(bad, Some(true)).socket_addr(SERVE_VAR).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{SERVE_VAR}={bad:?} is not valid: {ADDR_FORMAT}")
            );
        }
    }
}
