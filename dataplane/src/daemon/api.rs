//! The dataplane's socket: `podswitch_proto::server` does binding, threads, framing and the
//! version check; this is what `podswitchd` answers.

use super::Daemon;
use podswitch_proto::server::Service;
use podswitch_proto::{Request, Response};

impl Service for Daemon {
    type Request = Request;
    type Response = Response;
    const NAME: &'static str = "podswitchd";

    fn handle(&self, request: Request) -> Response {
        Daemon::handle(self, request.body)
    }

    fn error(&self, message: String) -> Response {
        Response::Error { message }
    }
}
