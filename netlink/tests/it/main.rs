//! Behaviour of podswitch-netlink against the real kernel. Every test works in network
//! namespaces of its own (see `harness`), so tests run in parallel, never touch the host's
//! interfaces, and leave nothing behind even when they fail or the run is killed.
//!
//! Needs CAP_SYS_ADMIN (root) to create namespaces. Not root, each test says SKIPPED (on
//! stderr, and in `PODSWITCH_SKIP_LOG`) and passes, or fails under `PODSWITCH_REQUIRE_ALL`,
//! which `scripts/test.sh` sets as root and in CI. As root, failing to create one is a failure.

// A test states what it expects by panicking otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod harness;

mod address;
mod ethtool;
mod link;
mod netns;
mod nftables;
mod route;
