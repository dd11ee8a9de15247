//! podswitch-control: owns the node's desired state (pods, IPAM, manifests), compiles it into
//! the dataplane's tables and feeds `podswitchd` over its socket; also home of the CNI plugin.
//!
//! Not built yet: the dataplane foundation comes first, and today a test harness or the demo
//! script drives `podswitchd`'s socket directly. See ARCHITECTURE.md, "What comes next".
