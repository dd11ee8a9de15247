//! The unix-socket API: one thread per connection, one [`Response`] per request, framed as
//! `podswitch_proto` describes. A malformed message gets an error response and the connection
//! stays usable; a broken frame (oversized, truncated) closes the connection.

use super::Daemon;
use podswitch_proto::{
    read_frame_bytes, write_frame, FrameError, Request, Response, PROTOCOL_VERSION,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

/// Binds the socket (replacing a stale one), root-only (0600).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: is another podswitchd running?",
                path.display()
            );
        }
        std::fs::remove_file(path)?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| anyhow::anyhow!("binding {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections until the listener fails.
pub fn serve(daemon: Arc<Daemon>, listener: UnixListener) -> anyhow::Result<()> {
    for conn in listener.incoming() {
        let conn = conn?;
        let daemon = daemon.clone();
        std::thread::Builder::new()
            .name("psw-api".into())
            .spawn(move || serve_connection(&daemon, conn))?;
    }
    Ok(())
}

fn serve_connection(daemon: &Daemon, mut conn: UnixStream) {
    loop {
        let response = match read_frame_bytes(&mut conn) {
            Ok(body) => respond(daemon, &body),
            Err(FrameError::Closed) => return,
            Err(e) => {
                let _ = write_frame(
                    &mut conn,
                    &Response::Error {
                        message: e.to_string(),
                    },
                );
                return;
            }
        };
        if write_frame(&mut conn, &response).is_err() {
            return;
        }
    }
}

/// Decodes and answers one request body.
pub fn respond(daemon: &Daemon, body: &[u8]) -> Response {
    // Check the version before the body, so an old client gets a version error rather than a
    // confusing decode error.
    let version = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
    match version {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Response::Error {
                message: format!(
                "protocol version {v} is not supported; this podswitchd speaks {PROTOCOL_VERSION}"
            ),
            }
        }
        None => {
            return Response::Error {
                message: "malformed request: missing \"version\"".into(),
            }
        }
    }
    match serde_json::from_slice::<Request>(body) {
        Ok(req) => daemon.handle(req.body),
        Err(e) => Response::Error {
            message: format!("malformed request: {e}"),
        },
    }
}
