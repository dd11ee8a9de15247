//! The control socket: `podswitch_proto::server` does binding, threads, framing and the
//! version check (exactly as for `podswitchd`'s socket, `docs/protocol.md`); this is what
//! `podswitch-control` answers. A malformed message gets an error with code 4 (the client sent
//! something unusable).

use crate::control::{code, Control};
use podswitch_proto::control::{ControlRequest, ControlResponse};
use podswitch_proto::server::Service;

impl Service for Control {
    type Request = ControlRequest;
    type Response = ControlResponse;
    const NAME: &'static str = "podswitch-control";

    fn handle(&self, request: ControlRequest) -> ControlResponse {
        Control::handle(self, request.body)
    }

    fn error(&self, message: String) -> ControlResponse {
        ControlResponse::Error {
            code: code::INVALID_ENVIRONMENT,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Harness;
    use podswitch_proto::control::ControlRequestBody;
    use podswitch_proto::server::{bind, respond, serve};
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
}
