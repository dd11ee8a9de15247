//! `install-cni` into temporary directories.

use crate::{podswitchctl, podswitchctl_with_env, text, TempDir};
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_cni_copies_the_plugin_and_writes_the_conflist() {
    let tmp = TempDir::new("install-cni");
    let plugin = tmp.path("build/podswitch-cni");
    fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    fs::write(&plugin, b"#!/bin/sh\necho plugin\n").unwrap();
    let (bin_a, bin_b, conf) = (tmp.path("opt/bin"), tmp.path("lib/cni"), tmp.path("net.d"));
    let args = [
        "install-cni",
        "--cni-binary",
        plugin.to_str().unwrap(),
        "--bin-dir",
        bin_a.to_str().unwrap(),
        "--bin-dir",
        bin_b.to_str().unwrap(),
        "--conf-dir",
        conf.to_str().unwrap(),
        "--name",
        "pods",
        "--control-socket",
        "/run/ps/control.sock",
    ];

    // Twice: the second run replaces what the first wrote.
    for _ in 0..2 {
        let out = podswitchctl(&args, None, b"");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!(
                "installed {a}/podswitch (from {p})\n\
                 installed {b}/podswitch (from {p})\n\
                 wrote {c}/10-podswitch.conflist (control socket /run/ps/control.sock)\n",
                a = bin_a.display(),
                b = bin_b.display(),
                c = conf.display(),
                p = plugin.display()
            )
        );
    }

    for dir in [&bin_a, &bin_b] {
        let installed = dir.join("podswitch");
        assert_eq!(fs::read(&installed).unwrap(), b"#!/bin/sh\necho plugin\n");
        assert_eq!(mode(&installed), 0o755);
        assert_eq!(
            fs::read_dir(dir).unwrap().count(),
            1,
            "leftovers in {dir:?}"
        );
    }
    let conflist: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(conf.join("10-podswitch.conflist")).unwrap())
            .unwrap();
    assert_eq!(
        conflist,
        serde_json::json!({"cniVersion": "1.0.0", "name": "pods",
            "plugins": [{"type": "podswitch", "controlSocket": "/run/ps/control.sock"}]})
    );
}

#[test]
fn install_cni_json_takes_the_socket_from_the_environment() {
    let tmp = TempDir::new("install-cni-json");
    let plugin = tmp.path("podswitch-cni");
    fs::write(&plugin, b"p").unwrap();
    let out = podswitchctl_with_env(
        &[
            "install-cni",
            "-o",
            "json",
            "--cni-binary",
            plugin.to_str().unwrap(),
            "--bin-dir",
            tmp.path("bin").to_str().unwrap(),
            "--conf-dir",
            tmp.path("conf").to_str().unwrap(),
            "--cni-version",
            "0.4.0",
        ],
        &[(
            "PODSWITCH_CONTROL_SOCKET",
            std::path::Path::new("/run/env/control.sock"),
        )],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({
            "source": plugin,
            "binaries": [tmp.path("bin/podswitch")],
            "conflist": tmp.path("conf/10-podswitch.conflist"),
            "control_socket": "/run/env/control.sock"})
    );
    let conf = fs::read_to_string(tmp.path("conf/10-podswitch.conflist")).unwrap();
    assert!(conf.contains("\"cniVersion\": \"0.4.0\""), "{conf}");
    assert!(conf.contains("/run/env/control.sock"), "{conf}");
}

#[test]
fn install_cni_names_a_missing_plugin() {
    let tmp = TempDir::new("install-cni-missing");
    let out = podswitchctl(
        &[
            "install-cni",
            "--cni-binary",
            "/nonexistent/podswitch-cni",
            "--bin-dir",
            tmp.path("bin").to_str().unwrap(),
            "--conf-dir",
            tmp.path("conf").to_str().unwrap(),
        ],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "podswitchctl: cannot read the CNI plugin /nonexistent/podswitch-cni: \
         No such file or directory\n"
    );
    assert!(!tmp.path("bin").exists());
}

#[test]
fn install_cni_refuses_an_unsupported_cni_version() {
    let out = podswitchctl(&["install-cni", "--cni-version", "1.0"], None, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value '1.0' for '--cni-version <V>'"),
        "{}",
        text(&out.stderr)
    );
}
