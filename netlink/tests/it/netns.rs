//! Namespaces: `in_netns` runs code there without moving the caller; handles stay bound to
//! the namespace they were made in.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::panic;
use std::path::Path;

use podswitch_netlink::{in_netns, Netlink};

/// The inode identifying the network namespace of the calling thread.
fn current_netns_inode() -> u64 {
    fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[test]
fn closure_runs_in_the_target_namespace_and_the_caller_stays_put() {
    let ns = netns_or_skip!();
    let before = current_netns_inode();
    let target = fs::metadata(ns.path()).unwrap().ino();
    assert_ne!(before, target);

    let inside = in_netns(&ns.path(), current_netns_inode).unwrap();
    assert_eq!(inside, target);
    assert_eq!(current_netns_inode(), before);
}

#[test]
fn work_done_inside_in_netns_stays_in_that_namespace() {
    let ns = netns_or_skip!();
    // A name no host would have; the host is only read, never changed.
    let name = format!("pswt{}", std::process::id() % 100_000);
    let created = in_netns(&ns.path(), || {
        let mut nl = Netlink::new().unwrap();
        nl.link_add_veth(&name, "pswt-peer").unwrap()
    })
    .unwrap();

    let mut nl = ns.netlink();
    assert_eq!(nl.link_index(&name).unwrap(), Some(created.0));
    let mut host = Netlink::new().unwrap();
    assert_eq!(host.link_index(&name).unwrap(), None);
}

#[test]
fn handle_made_by_new_in_netns_keeps_acting_there_from_any_thread() {
    let ns = netns_or_skip!();
    let mut nl = Netlink::new_in_netns(&ns.path()).unwrap();
    // A new namespace has loopback only, and it is down.
    assert_eq!(nl.link_index("lo").unwrap(), Some(1));
    assert!(!nl.link(1).unwrap().up);
    std::thread::spawn(move || nl.link_set_up(1).unwrap())
        .join()
        .unwrap();
    assert!(ns.netlink().link(1).unwrap().up);
}

#[test]
fn panic_inside_is_passed_on_to_the_caller() {
    let ns = netns_or_skip!();
    let before = current_netns_inode();
    let caught = panic::catch_unwind(|| in_netns(&ns.path(), || panic!("inside the namespace")));
    let payload = caught.expect_err("the panic reaches the caller");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"inside the namespace")
    );
    assert_eq!(current_netns_inode(), before);
}

#[test]
fn missing_namespace_is_an_error_naming_the_path() {
    let err = in_netns(Path::new("/var/run/netns/psw-does-not-exist"), || ()).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT));
    assert!(
        err.to_string()
            .starts_with("open network namespace /var/run/netns/psw-does-not-exist: "),
        "{err}"
    );
}
