//! podswitch-cni: the CNI plugin container runtimes run to attach a pod to podswitch (spec
//! 1.0.0 with GC and STATUS from 1.1.0; configs of 0.3.0 to 1.1.0 are answered in their own
//! format). It is a thin client: it validates what the runtime passes (environment, network
//! config on stdin, `CNI_ARGS`), sends one request to podswitch-control on its unix socket, and
//! prints the CNI result or error. The control process does the work and holds the state.
//!
//! Code map: [`env`] (`CNI_*` variables, `CNI_ARGS`), [`config`] (stdin), [`plugin`] (the
//! commands, a pure function over a [`client::Control`]), [`client`] (the socket round trip),
//! [`result`] (what is printed), [`version`] (which spec version's format).

pub mod client;
pub mod config;
pub mod env;
pub mod plugin;
pub mod result;
pub mod version;
