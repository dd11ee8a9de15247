//! `install-cni`: puts the CNI plugin and its network config where the container runtime looks.
//!
//! A runtime resolves `"type": "podswitch"` to an executable named `podswitch` in its CNI bin
//! dirs, so the plugin (built as `podswitch-cni`) is installed under that name. Every file is
//! written under a temporary name in its final directory and renamed over the old one: a
//! runtime starting a pod meanwhile sees the old file or the new one, never half of one, and a
//! plugin binary that is running is replaced without `ETXTBSY`.

use crate::client::os_error_text;
use crate::InstallCniArgs;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where runtimes look for plugins: containerd's and CNI's default, and Debian's packages'.
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// Where runtimes read network configs.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// The network's name unless `--name` says otherwise.
pub const DEFAULT_NETWORK_NAME: &str = "podswitch";
/// The config's `cniVersion` unless `--cni-version` says otherwise.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";
/// The config versions podswitch-cni speaks (a conflist needs 0.3.0 or later).
pub const CNI_VERSIONS: [&str; 5] = ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"];
/// The built plugin's file name, looked for next to podswitchctl.
pub const CNI_BINARY_NAME: &str = "podswitch-cni";
/// The plugin type in the config, and so the installed executable's name.
pub const PLUGIN_TYPE: &str = "podswitch";
/// The config's file name: the `10-` prefix sorts it before most others, and runtimes use the
/// first config in name order.
pub const CONFLIST_NAME: &str = "10-podswitch.conflist";

/// What `install-cni` wrote.
#[derive(Debug, Serialize)]
pub struct Installed {
    /// The plugin that was copied.
    pub source: PathBuf,
    /// Each installed copy.
    pub binaries: Vec<PathBuf>,
    /// The network config.
    pub conflist: PathBuf,
    /// The control socket the config names.
    pub control_socket: PathBuf,
}

/// Installs the plugin into every bin dir and writes the conflist naming `control_socket`.
pub fn run(args: &InstallCniArgs, control_socket: &Path) -> Result<Installed> {
    let source = match &args.cni_binary {
        Some(path) => path.clone(),
        None => default_cni_binary()?,
    };
    check_source(&source, args.cni_binary.is_none())?;
    // The plugin runs in the runtime's working directory, so a relative path would break.
    let control_socket = std::path::absolute(control_socket).map_err(|e| {
        anyhow!(
            "cannot make the control socket path {} absolute: {}",
            control_socket.display(),
            os_error_text(&e)
        )
    })?;
    let socket_text = control_socket.to_str().ok_or_else(|| {
        anyhow!(
            "the control socket path {} is not UTF-8, which a JSON config cannot hold",
            control_socket.display()
        )
    })?;
    let config = conflist(&args.name, &args.cni_version, socket_text);

    let mut binaries = Vec::new();
    for dir in &args.bin_dirs {
        create_dir(dir, "CNI bin dir")?;
        let dest = dir.join(PLUGIN_TYPE);
        write_atomically(&dest, 0o755, |out| {
            io::copy(&mut File::open(&source)?, out).map(drop)
        })?;
        binaries.push(dest);
    }
    create_dir(&args.conf_dir, "CNI config dir")?;
    let conf = args.conf_dir.join(CONFLIST_NAME);
    write_atomically(&conf, 0o644, |out| out.write_all(config.as_bytes()))?;
    Ok(Installed {
        source,
        binaries,
        conflist: conf,
        control_socket,
    })
}

/// The network config: one podswitch plugin that finds podswitch-control at `control_socket`.
pub fn conflist(name: &str, cni_version: &str, control_socket: &str) -> String {
    #[derive(Serialize)]
    struct Conflist<'a> {
        #[serde(rename = "cniVersion")]
        cni_version: &'a str,
        name: &'a str,
        plugins: [Plugin<'a>; 1],
    }
    #[derive(Serialize)]
    struct Plugin<'a> {
        #[serde(rename = "type")]
        plugin_type: &'a str,
        #[serde(rename = "controlSocket")]
        control_socket: &'a str,
    }
    let conf = Conflist {
        cni_version,
        name,
        plugins: [Plugin {
            plugin_type: PLUGIN_TYPE,
            control_socket,
        }],
    };
    // Serializing borrowed strings into JSON cannot fail.
    serde_json::to_string_pretty(&conf).unwrap_or_default() + "\n"
}

/// What `install-cni` prints for people.
pub fn render(i: &Installed) -> String {
    let mut out = String::new();
    for b in &i.binaries {
        out += &format!("installed {} (from {})\n", b.display(), i.source.display());
    }
    out += &format!(
        "wrote {} (control socket {})\n",
        i.conflist.display(),
        i.control_socket.display()
    );
    out
}

/// Checks `--name` as the CNI spec defines a network name.
pub fn parse_network_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(name.to_string())
    } else {
        Err("a CNI network name is letters, digits, '_', '.' and '-', \
             starting with a letter or digit"
            .to_string())
    }
}

/// `podswitch-cni` in the directory of the running podswitchctl, where cargo and packages put
/// the two binaries side by side.
fn default_cni_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        anyhow!(
            "cannot find podswitchctl's own executable to look for {CNI_BINARY_NAME} beside it: \
             {}; give --cni-binary PATH",
            os_error_text(&e)
        )
    })?;
    Ok(beside(&exe))
}

fn beside(exe: &Path) -> PathBuf {
    exe.with_file_name(CNI_BINARY_NAME)
}

fn check_source(source: &Path, defaulted: bool) -> Result<()> {
    let hint = if defaulted {
        " (next to podswitchctl); build it with `cargo build -p podswitch-cni` or give \
         --cni-binary PATH"
    } else {
        ""
    };
    match fs::metadata(source) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(anyhow!(
            "the CNI plugin {} is not a regular file{hint}",
            source.display()
        )),
        Err(e) => Err(anyhow!(
            "cannot read the CNI plugin {}: {}{hint}",
            source.display(),
            os_error_text(&e)
        )),
    }
}

fn create_dir(dir: &Path, what: &str) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io_error(e, &format!("cannot create the {what}"), dir))
}

/// Writes `dest` with `mode` through a temporary file in the same directory (so the rename
/// stays within one filesystem and is atomic). The temporary file is removed on failure.
fn write_atomically(
    dest: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut out = File::create(&tmp)?;
        fill(&mut out)?;
        // The mode is set explicitly: the umask must not take the runtime's execute bit away.
        out.set_permissions(fs::Permissions::from_mode(mode))?;
        // On disk before the rename, so a crash cannot leave an empty file under the real name.
        out.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(e, "cannot write", &tmp));
    }
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(e, &format!("cannot rename {} to", tmp.display()), dest)
    })
}

fn io_error(e: io::Error, doing: &str, path: &Path) -> anyhow::Error {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " — run podswitchctl as root, or point --bin-dir/--conf-dir elsewhere"
    } else {
        ""
    };
    anyhow!("{doing} {}: {}{hint}", path.display(), os_error_text(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the temp dir, removed with its contents when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "podswitchctl-install-cni-{}-{test}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn args(tmp: &Path, plugin: &Path) -> InstallCniArgs {
        InstallCniArgs {
            bin_dirs: vec![tmp.join("opt/cni/bin"), tmp.join("usr/lib/cni")],
            conf_dir: tmp.join("etc/cni/net.d"),
            cni_binary: Some(plugin.to_path_buf()),
            name: DEFAULT_NETWORK_NAME.into(),
            cni_version: DEFAULT_CNI_VERSION.into(),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn conflist_names_the_plugin_and_the_control_socket() {
        assert_eq!(
            conflist("podswitch", "1.0.0", "/run/podswitch/control.sock"),
            r#"{
  "cniVersion": "1.0.0",
  "name": "podswitch",
  "plugins": [
    {
      "type": "podswitch",
      "controlSocket": "/run/podswitch/control.sock"
    }
  ]
}
"#
        );
        let value: serde_json::Value =
            serde_json::from_str(&conflist("pods", "0.4.0", "/tmp/c.sock")).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"cniVersion": "0.4.0", "name": "pods",
                "plugins": [{"type": "podswitch", "controlSocket": "/tmp/c.sock"}]})
        );
    }

    #[test]
    fn installs_the_plugin_executable_in_every_bin_dir_and_the_conflist() {
        let tmp = TempDir::new("fresh");
        let plugin = tmp.0.join("podswitch-cni");
        fs::write(&plugin, b"\x7fELF plugin").unwrap();
        fs::set_permissions(&plugin, fs::Permissions::from_mode(0o600)).unwrap();

        let done = run(&args(&tmp.0, &plugin), Path::new("/run/x/control.sock")).unwrap();

        assert_eq!(
            done.binaries,
            [
                tmp.0.join("opt/cni/bin/podswitch"),
                tmp.0.join("usr/lib/cni/podswitch")
            ]
        );
        for b in &done.binaries {
            assert_eq!(fs::read(b).unwrap(), b"\x7fELF plugin");
            assert_eq!(mode(b), 0o755, "{}", b.display());
        }
        let conf = tmp.0.join("etc/cni/net.d/10-podswitch.conflist");
        assert_eq!(done.conflist, conf);
        assert_eq!(mode(&conf), 0o644);
        let value: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&conf).unwrap()).unwrap();
        assert_eq!(value["plugins"][0]["controlSocket"], "/run/x/control.sock");
        assert_eq!(
            render(&done),
            format!(
                "installed {0}/opt/cni/bin/podswitch (from {0}/podswitch-cni)\n\
                 installed {0}/usr/lib/cni/podswitch (from {0}/podswitch-cni)\n\
                 wrote {0}/etc/cni/net.d/10-podswitch.conflist \
                 (control socket /run/x/control.sock)\n",
                tmp.0.display()
            )
        );
    }

    #[test]
    fn running_twice_replaces_the_files_and_leaves_no_temporaries() {
        let tmp = TempDir::new("twice");
        let plugin = tmp.0.join("podswitch-cni");
        fs::write(&plugin, b"old").unwrap();
        let mut a = args(&tmp.0, &plugin);
        run(&a, Path::new("/run/podswitch/control.sock")).unwrap();
        fs::write(&plugin, b"new").unwrap();
        a.name = "second".into();
        run(&a, Path::new("/run/podswitch/control.sock")).unwrap();

        for dir in &a.bin_dirs {
            let names: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["podswitch"], "{}", dir.display());
            assert_eq!(fs::read(dir.join("podswitch")).unwrap(), b"new");
            assert_eq!(mode(&dir.join("podswitch")), 0o755);
        }
        let names: Vec<_> = fs::read_dir(&a.conf_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["10-podswitch.conflist"]);
        let conf = fs::read_to_string(a.conf_dir.join(CONFLIST_NAME)).unwrap();
        assert_eq!(
            conf,
            conflist("second", "1.0.0", "/run/podswitch/control.sock")
        );
    }

    #[test]
    fn relative_control_socket_is_made_absolute() {
        let tmp = TempDir::new("relative");
        let plugin = tmp.0.join("podswitch-cni");
        fs::write(&plugin, b"p").unwrap();
        let done = run(&args(&tmp.0, &plugin), Path::new("run/control.sock")).unwrap();
        assert!(done.control_socket.is_absolute());
        assert!(done.control_socket.ends_with("run/control.sock"));
    }

    #[test]
    fn missing_plugin_is_named_and_nothing_is_written() {
        let tmp = TempDir::new("missing");
        let a = args(&tmp.0, &tmp.0.join("nope"));
        let err = run(&a, Path::new("/run/c.sock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read the CNI plugin {}/nope: No such file or directory",
                tmp.0.display()
            )
        );
        assert!(!tmp.0.join("opt").exists());
    }

    #[test]
    fn unwritable_dir_is_named() {
        let tmp = TempDir::new("unwritable");
        let plugin = tmp.0.join("podswitch-cni");
        fs::write(&plugin, b"p").unwrap();
        // A bin "dir" that is a file cannot be created, even by root.
        let mut a = args(&tmp.0, &plugin);
        a.bin_dirs = vec![plugin.clone()];
        let err = run(&a, Path::new("/run/c.sock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot create the CNI bin dir {}: File exists",
                plugin.display()
            )
        );
    }

    #[test]
    fn default_plugin_is_beside_podswitchctl() {
        assert_eq!(
            beside(Path::new("/usr/local/bin/podswitchctl")),
            Path::new("/usr/local/bin/podswitch-cni")
        );
    }

    #[test]
    fn network_names_follow_the_cni_spec() {
        for ok in ["podswitch", "k8s-pod.net_1", "9"] {
            assert_eq!(parse_network_name(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "-x", "a b", "a/b", "é"] {
            assert!(parse_network_name(bad).is_err(), "{bad:?}");
        }
    }
}
