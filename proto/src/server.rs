//! The server side of both sockets, shared by `podswitchd` and `podswitch-control`: binding
//! (root-only, replacing a stale socket, refusing a live one), a thread per connection, one
//! response per frame, and the version check that comes before any decoding.
//!
//! A malformed body gets an error response and the connection stays usable; a broken frame
//! (oversized, truncated) gets an error response and the connection is closed.

use crate::framing::{read_frame_bytes, write_frame, FrameError};
use crate::PROTOCOL_VERSION;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

/// A daemon answering requests of type `Request` on a socket.
pub trait Service: Send + Sync + 'static {
    /// The request type; it carries the version field the server checks first.
    type Request: DeserializeOwned;
    /// The response type.
    type Response: Serialize;
    /// Name used in messages ("podswitchd", "podswitch-control").
    const NAME: &'static str;
    /// Answers a decoded request.
    fn handle(&self, request: Self::Request) -> Self::Response;
    /// The error response carrying `message`.
    fn error(&self, message: String) -> Self::Response;
}

/// Binds `path` for `S` (0600; a stale socket file is replaced, a live one refused).
pub fn bind<S: Service>(path: &Path) -> io::Result<UnixListener> {
    let context =
        |e: io::Error| io::Error::new(e.kind(), format!("binding {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(context)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another {} running?",
                    path.display(),
                    S::NAME
                ),
            ));
        }
        std::fs::remove_file(path).map_err(context)?;
    }
    let listener = UnixListener::bind(path).map_err(context)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(context)?;
    Ok(listener)
}

/// Serves connections, a thread each, until the listener fails.
pub fn serve<S: Service>(service: Arc<S>, listener: UnixListener) -> io::Result<()> {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(conn) => conn,
            // A client that gave up before accept() finished is not our failure.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e),
        };
        let service = service.clone();
        std::thread::Builder::new()
            .name(format!("{}-api", S::NAME))
            .spawn(move || serve_connection(&*service, conn))?;
    }
    Ok(())
}

fn serve_connection<S: Service>(service: &S, mut conn: UnixStream) {
    loop {
        let response = match read_frame_bytes(&mut conn) {
            Ok(body) => respond(service, &body),
            Err(FrameError::Closed) => return,
            Err(e) => {
                let _ = write_frame(&mut conn, &service.error(e.to_string()));
                return;
            }
        };
        if write_frame(&mut conn, &response).is_err() {
            return;
        }
    }
}

/// Decodes and answers one request body. The version is checked before the body is decoded,
/// so an old client gets a version error rather than a confusing decode error.
pub fn respond<S: Service>(service: &S, body: &[u8]) -> S::Response {
    let version = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
    match version {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return service.error(format!(
                "protocol version {v} is not supported; this {} speaks {PROTOCOL_VERSION}",
                S::NAME
            ))
        }
        None => return service.error("malformed request: missing \"version\"".into()),
    }
    match serde_json::from_slice::<S::Request>(body) {
        Ok(req) => service.handle(req),
        Err(e) => service.error(format!("malformed request: {e}")),
    }
}
