//! Datadog's own test agent (`ddapm-test-agent`, PyPI), installed by
//! `scripts/test.sh` into `.venv/`, started on loopback for one test.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http_get;

pub fn agent_binary() -> PathBuf {
    let p = match std::env::var_os("LOCKPROF_TEST_AGENT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/ddapm-test-agent"),
    };
    assert!(
        p.exists(),
        "Datadog's test agent is not installed at {}.\n\
         Install it with ./scripts/test.sh (which creates .venv/), or by hand:\n  \
         python3 -m venv .venv && .venv/bin/pip install ddapm-test-agent\n\
         (Debian needs the python3-venv package), or point LOCKPROF_TEST_AGENT at the binary.",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestAgent {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl TestAgent {
    pub fn start() -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("apm.socket");
        let port = free_port();
        let child = Command::new(agent_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--otlp-http-port", &free_port().to_string()])
            .args(["--otlp-grpc-port", &free_port().to_string()])
            .arg("--trace-uds-socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ddapm-test-agent");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let agent = TestAgent {
            child,
            addr,
            _dir: dir,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if matches!(http_get(addr, "/test/session/requests"), Ok((200, _))) && agent.socket.exists() {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "the test agent did not come up on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Profile uploads the agent has received, oldest first.
    pub fn profile_requests(&self) -> Vec<Value> {
        let (status, body) = http_get(self.addr, "/test/session/requests").unwrap();
        assert_eq!(status, 200);
        let all: Vec<Value> = serde_json::from_slice(&body).unwrap();
        let profiles: Vec<Value> = all
            .into_iter()
            .filter(|r| {
                r["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/profiling/v1/input"))
            })
            .collect();
        profiles
    }

    /// The traces the agent has received (`/test/session/traces`): each a
    /// list of spans, as Datadog's tracers send them.
    pub fn traces(&self) -> Vec<Vec<Value>> {
        let (status, body) = http_get(self.addr, "/test/session/traces").unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn header<'a>(req: &'a Value, name: &str) -> Option<&'a str> {
    req["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}
