//! The control socket: `podswitch_proto::server` does binding, threads, framing and the
//! version check (exactly as for `podswitchd`'s socket, `docs/protocol.md`); this is what
//! `podswitch-control` answers. A malformed message gets an error with code 4 (the client sent
//! something unusable); a refusal the server makes because it is at a limit right now (too
//! many connections, the large-frame budget) or because a frame did not arrive whole gets
//! code 11, try again later, so the runtime retries instead of reporting a broken setup.

use crate::control::{code, Control};
use podswitch_proto::control::{ControlRequest, ControlResponse};
use podswitch_proto::server::{ErrorKind, Service};

impl Service for Control {
    type Request = ControlRequest;
    type Response = ControlResponse;
    const NAME: &'static str = "podswitch-control";

    fn handle(&self, request: ControlRequest) -> ControlResponse {
        Control::handle(self, request.body)
    }

    fn error(&self, kind: ErrorKind, message: String) -> ControlResponse {
        let code = if kind.is_transient() {
            code::TRY_AGAIN_LATER
        } else {
            code::INVALID_ENVIRONMENT
        };
        ControlResponse::Error { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Harness;
    use podswitch_proto::control::ControlRequestBody;
    use podswitch_proto::server::{bind, respond, serve, serve_with, ServerConfig};
    use podswitch_proto::{read_frame, write_frame};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

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
        let listener = bind::<Control>(&path).unwrap();
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
        let err = bind::<Control>(&path).unwrap_err().to_string();
        assert!(err.contains("is in use"), "{err}");
    }

    #[test]
    fn a_server_at_its_connection_limit_answers_try_again_later() {
        let h = Harness::new();
        let path = h.dir.path().join("control.sock");
        let listener = bind::<Control>(&path).unwrap();
        let control = Arc::new(Control::start(
            h.c().settings().clone(),
            Arc::new(crate::store::Store::open(&h.dir.path().join("api")).unwrap()),
            Box::new(h.dp.clone()),
            h.net.clone(),
        ));
        let full = ServerConfig {
            max_connections: 0,
            ..Default::default()
        };
        std::thread::spawn(move || serve_with(control, &listener, full));
        let mut conn = UnixStream::connect(&path).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        match read_frame::<_, ControlResponse>(&mut conn).unwrap() {
            ControlResponse::Error { code, message } => {
                assert_eq!(code, code::TRY_AGAIN_LATER, "{message}");
                assert!(message.starts_with("too many connections"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transient_server_refusals_are_code_11_and_the_rest_code_4() {
        let h = Harness::new();
        let code_of = |kind| match h.c().error(kind, String::new()) {
            ControlResponse::Error { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code_of(ErrorKind::Busy), code::TRY_AGAIN_LATER);
        assert_eq!(code_of(ErrorKind::Incomplete), code::TRY_AGAIN_LATER);
        assert_eq!(code_of(ErrorKind::Malformed), code::INVALID_ENVIRONMENT);
        assert_eq!(
            code_of(ErrorKind::UnsupportedVersion),
            code::INVALID_ENVIRONMENT
        );
        assert_eq!(code_of(ErrorKind::TooLarge), code::INVALID_ENVIRONMENT);
    }
}
