//! Starts a local moto server (the AWS emulator behind every end-to-end test and the demo).
//!
//! moto runs as a child process on a free port of 127.0.0.1. It is started through a tiny `sh`
//! wrapper that kills moto as soon as our end of its stdin pipe closes: that happens on `Drop`,
//! and also when the test process exits or is killed without running destructors (a server held
//! in a `static` is never dropped), so no moto process outlives the process that started it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How to get moto when it cannot be found; said verbatim in the error.
pub const INSTALL_HINT: &str =
    "moto_server not found: run `make venv` (creates .venv with moto[server])";

/// Readiness is polled this many times, `POLL_INTERVAL` apart: moto's cold start (Python imports)
/// takes one to a few seconds, so this allows about 30 s before giving up.
const READY_TRIES: u32 = 300;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("{INSTALL_HINT}")]
    NotFound,
    #[error(
        "HLSYNC_MOTO_SERVER is set to {0}, which is not a file: point it at moto_server, or unset it and run `make venv`"
    )]
    BadOverride(PathBuf),
    #[error("could not start moto_server ({path}): {source}; check that it runs: `{path} --help`")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moto_server exited before it answered ({status}); its log ({log}) ends with:\n{tail}")]
    Exited {
        status: String,
        log: String,
        tail: String,
    },
    #[error(
        "moto_server did not answer on {url} after {tries} tries; its log ({log}) ends with:\n{tail}"
    )]
    NotReady {
        url: String,
        tries: u32,
        log: String,
        tail: String,
    },
}

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    log: PathBuf,
}

/// moto_server as `moto_server` runs it, but with DynamoDB's requests applied one at a time.
/// moto works each request in a thread of its own, and its DynamoDB checks a condition and then
/// writes: two conditional writes at once may both pass, which DynamoDB never allows. hlsync's
/// leases, watermarks, push records and shared pace rest on that guarantee, so a test of them
/// against moto would race on a busy machine. SQS (whose long polls wait inside a request) stays
/// concurrent.
const ATOMIC_DYNAMODB: &str = r#"
import os, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
os.environ.setdefault("MOTO_PORT", args["-p"])
app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()
def serve(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
        with dynamodb:
            return list(app(environ, start_response))
    return app(environ, start_response)
run_simple(args["-H"], int(args["-p"]), serve, threaded=True, request_handler=MotoRequestHandler)
"#;

/// The Python that runs a `moto_server` script (its `#!` line), when it names one that exists.
fn interpreter(binary: &Path) -> Option<PathBuf> {
    let text = std::fs::read(binary).ok()?;
    let first = text.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?.trim();
    let python = PathBuf::from(line.split_whitespace().next()?);
    (python.is_file() && python.file_name()?.to_str()?.starts_with("python")).then_some(python)
}

impl MotoServer {
    /// Finds `moto_server`, starts it on a free port and returns once it answers HTTP.
    pub fn start() -> Result<MotoServer, MotoError> {
        let binary = find_moto_server()?;
        Self::start_with(&binary)
    }

    /// Starts the given `moto_server` executable.
    pub fn start_with(binary: &Path) -> Result<MotoServer, MotoError> {
        let port = free_port().map_err(|source| MotoError::Spawn {
            path: binary.to_path_buf(),
            source,
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::env::temp_dir().join(format!("hlsync-moto-{port}.log"));
        let log_file = File::create(&log).map_err(|source| MotoError::Spawn {
            path: binary.to_path_buf(),
            source,
        })?;
        // moto logs every request: it goes to a file, because a pipe nobody drains would fill
        // up and stall the server. The wrapper deletes the file when it stops moto.
        // The watcher reads our pipe through fd 3 because a background job's stdin is
        // /dev/null; `wait` makes the wrapper exit when moto does, so a crash shows at once.
        let script = r#"exec 3<&0
port=$1 log=$2; shift 2
"$@" -H 127.0.0.1 -p "$port" </dev/null 3<&- & moto=$!
{ read -r _ <&3; kill "$moto" 2>/dev/null; rm -f "$log"; } &
wait "$moto""#;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("hlsync-moto")
            .arg(port.to_string())
            .arg(&log);
        match interpreter(binary) {
            Some(python) => command.arg(python).arg("-c").arg(ATOMIC_DYNAMODB),
            None => command.arg(binary),
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|source| MotoError::Spawn {
                path: binary.to_path_buf(),
                source,
            })?;
        let stdin = child.stdin.take();
        let mut server = MotoServer {
            child,
            stdin,
            addr,
            log,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL` (or an SDK config's endpoint) should be.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where moto's own log goes (handy when a test against it fails).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn wait_ready(&mut self) -> Result<(), MotoError> {
        for _ in 0..READY_TRIES {
            if answers_http(self.addr) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(MotoError::Exited {
                    status: status.to_string(),
                    log: self.log.display().to_string(),
                    tail: log_tail(&self.log),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(MotoError::NotReady {
            url: self.endpoint_url(),
            tries: READY_TRIES,
            log: self.log.display().to_string(),
            tail: log_tail(&self.log),
        })
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Closing the pipe makes the wrapper kill moto and exit.
        drop(self.stdin.take());
        if self.child.wait().is_err() {
            let _ = self.child.kill();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

static SHARED: OnceLock<MotoServer> = OnceLock::new();

/// One moto server for the whole process, started on first use: what a test binary shares
/// between its tests, each of which makes its own uniquely named resources. Held in a `static`,
/// it is never dropped; the wrapper stops moto when the process exits. Panics (never skips) with
/// the reason, e.g. the install command when moto is missing.
pub fn shared() -> &'static MotoServer {
    SHARED.get_or_init(|| MotoServer::start().unwrap_or_else(|err| panic!("{err}")))
}

/// `HLSYNC_MOTO_SERVER`, else the workspace's `.venv/bin/moto_server` (the workspace this crate
/// was built in, then any parent of the current directory), else `moto_server` on `PATH`.
pub fn find_moto_server() -> Result<PathBuf, MotoError> {
    if let Some(path) = std::env::var_os("HLSYNC_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(MotoError::BadOverride(path))
        };
    }
    let venv = Path::new(".venv").join("bin").join("moto_server");
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().skip(1);
    let cwd = std::env::current_dir().ok();
    let from_cwd = cwd.iter().flat_map(|dir| dir.ancestors());
    if let Some(found) = built_in
        .chain(from_cwd)
        .map(|dir| dir.join(&venv))
        .find(|candidate| candidate.is_file())
    {
        return Ok(found);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
        .ok_or(MotoError::NotFound)
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// True once something at `addr` answers an HTTP request (any status: moto is up).
fn answers_http(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(
            b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )?;
        let mut head = [0u8; 8];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1."))
    };
    attempt().unwrap_or(false)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_hint_says_how_to_install() {
        assert_eq!(
            MotoError::NotFound.to_string(),
            "moto_server not found: run `make venv` (creates .venv with moto[server])"
        );
    }

    #[test]
    fn a_binary_that_cannot_run_fails_fast_with_its_log() {
        let err = MotoServer::start_with(Path::new("/nonexistent/moto_server"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("exited before it answered"), "{err}");
        assert!(err.contains("/nonexistent/moto_server"), "{err}");
    }

    #[test]
    fn starts_answers_and_stops() {
        let server = MotoServer::start().expect(INSTALL_HINT);
        let addr = server.addr();
        assert!(answers_http(addr));
        assert!(server.endpoint_url().starts_with("http://127.0.0.1:"));
        drop(server);
        assert!(!answers_http(addr), "moto still answers after drop");
    }
}
