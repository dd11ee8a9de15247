//! Integration tests of podswitch-packet through its public API only (one test binary, a
//! module per concern; see STYLE.md rule 15).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gso_kernel;
mod gso_smoltcp;
mod smoltcp_differential;
