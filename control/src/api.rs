//! The control socket: one thread per connection, one [`ControlResponse`] per request, framed
//! and versioned exactly like `podswitchd`'s socket (`docs/protocol.md`). A malformed message
//! gets an error response (code 4: the client sent something unusable) and the connection
//! stays usable; a broken frame (oversized, truncated) closes it.

use crate::control::{code, Control};
use podswitch_proto::control::{ControlRequest, ControlResponse};
use podswitch_proto::{read_frame_bytes, write_frame, FrameError, PROTOCOL_VERSION};
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
                "{} is in use: is another podswitch-control running?",
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
pub fn serve(control: Arc<Control>, listener: UnixListener) -> anyhow::Result<()> {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(conn) => conn,
            // A client that gave up before accept() finished is not our failure.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e.into()),
        };
        let control = control.clone();
        std::thread::Builder::new()
            .name("psw-ctl-api".into())
            .spawn(move || serve_connection(&control, conn))?;
    }
    Ok(())
}

fn serve_connection(control: &Control, mut conn: UnixStream) {
    loop {
        let response = match read_frame_bytes(&mut conn) {
            Ok(body) => respond(control, &body),
            Err(FrameError::Closed) => return,
            Err(e) => {
                let _ = write_frame(&mut conn, &error(e.to_string()));
                return;
            }
        };
        if write_frame(&mut conn, &response).is_err() {
            return;
        }
    }
}

fn error(message: String) -> ControlResponse {
    ControlResponse::Error {
        code: code::INVALID_ENVIRONMENT,
        message,
    }
}

/// Decodes and answers one request body.
pub fn respond(control: &Control, body: &[u8]) -> ControlResponse {
    // The version first, so an old client gets a version error rather than a confusing
    // decode error.
    let version = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
    match version {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return error(format!(
                "protocol version {v} is not supported; this podswitch-control speaks \
                 {PROTOCOL_VERSION}"
            ))
        }
        None => return error("malformed request: missing \"version\"".into()),
    }
    match serde_json::from_slice::<ControlRequest>(body) {
        Ok(req) => control.handle(req.body),
        Err(e) => error(format!("malformed request: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Harness;
    use podswitch_proto::control::ControlRequestBody;
    use podswitch_proto::read_frame;

    #[test]
    fn wrong_or_missing_version_and_garbage_are_answered_with_errors() {
        let h = Harness::new();
        let answer = |body: &str| match respond(h.c(), body.as_bytes()) {
            ControlResponse::Error { code, message } => (code, message),
            other => panic!("{other:?}"),
        };
        let (code, message) = answer(r#"{"version":9,"request":"status"}"#);
        assert_eq!(code, 4);
        assert!(
            message.contains("protocol version 9 is not supported"),
            "{message}"
        );
        assert!(answer(r#"{"request":"status"}"#)
            .1
            .contains("missing \"version\""));
        assert!(answer(r#"{"version":1,"request":"fly"}"#)
            .1
            .starts_with("malformed request"));
    }

    #[test]
    fn the_socket_serves_requests_in_turn_on_one_connection() {
        let h = Harness::new();
        let path = h.dir.path().join("control.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let control = Arc::new(Control::start(
            h.c().settings().clone(),
            Arc::new(crate::store::Store::open(&h.dir.path().join("api")).unwrap()),
            Box::new(h.dp.clone()),
            h.net.clone(),
        ));
        std::thread::spawn(move || serve(control, listener));
        let mut conn = UnixStream::connect(&path).unwrap();
        for _ in 0..2 {
            let req = ControlRequest::new(ControlRequestBody::Status);
            write_frame(&mut conn, &req).unwrap();
            let resp: ControlResponse = read_frame(&mut conn).unwrap();
            assert!(matches!(resp, ControlResponse::Status(_)), "{resp:?}");
        }
        // A second control on the same path is refused while this one serves.
        let err = bind(&path).unwrap_err().to_string();
        assert!(err.contains("is in use"), "{err}");
    }
}
