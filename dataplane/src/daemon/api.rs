//! The dataplane's socket: `podswitch_proto::server` does binding, threads, framing and the
//! version check; this is what `podswitchd` answers.

use super::Daemon;
use podswitch_proto::server::{ErrorKind, Service};
use podswitch_proto::{Request, Response};

impl Service for Daemon {
    type Request = Request;
    type Response = Response;
    const NAME: &'static str = "podswitchd";

    fn handle(&self, request: Request) -> Response {
        Daemon::handle(self, request.body)
    }

    /// The dataplane's error response has no code: the message (which says "busy ... retry
    /// later" for transient refusals) is all its clients need.
    fn error(&self, _kind: ErrorKind, message: String) -> Response {
        Response::Error { message }
    }
}
