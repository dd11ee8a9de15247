//! The runtime's side of the call: the `CNI_*` environment variables and the `CNI_ARGS` pairs.
//! Each command checks the variables it needs before anything is sent to podswitch-control, so
//! a bad invocation fails with code 4 and names every variable at fault.

use crate::result::{code, CniError};
use podswitch_proto::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

/// The `CNI_*` variables as the runtime set them (`None`: unset or not UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEnv {
    /// `CNI_COMMAND`.
    pub command: Option<String>,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`.
    pub args: Option<String>,
    /// `CNI_PATH`: not used, podswitch delegates to no other plugin.
    pub path: Option<String>,
}

impl RawEnv {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (the process environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            command: lookup("CNI_COMMAND"),
            container_id: lookup("CNI_CONTAINERID"),
            netns: lookup("CNI_NETNS"),
            ifname: lookup("CNI_IFNAME"),
            args: lookup("CNI_ARGS"),
            path: lookup("CNI_PATH"),
        }
    }

    /// `CNI_COMMAND`, which every invocation needs.
    pub fn command(&self) -> Result<Command, CniError> {
        let raw = self.command.as_deref().unwrap_or("");
        if raw.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                "required environment variable CNI_COMMAND is missing: podswitch-cni is run by \
                 a container runtime, which sets CNI_COMMAND to ADD, DEL, CHECK, VERSION, GC or STATUS",
            ));
        }
        Command::parse(raw).ok_or_else(|| {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_COMMAND {raw:?} is not one of ADD, DEL, CHECK, VERSION, GC, STATUS"),
            )
        })
    }

    /// The identity of an ADD or CHECK: container id, netns and interface, all required.
    ///
    /// For ADD (`strict`) the values must also have the spec's form (container id charset,
    /// Linux interface name rules, an absolute netns path), since ADD creates things named after
    /// them. CHECK only names what an ADD already accepted.
    pub fn attach(&self, strict: bool) -> Result<AttachEnv, CniError> {
        let [container_id, netns, ifname] = required([
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
        ])?;
        if strict {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
            if !netns.starts_with('/') {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!(
                        "CNI_NETNS {netns:?} is not an absolute path: expected \
                         /var/run/netns/NAME or /proc/PID/ns/net"
                    ),
                ));
            }
        }
        Ok(AttachEnv {
            container_id,
            netns,
            ifname,
        })
    }

    /// The identity of a DEL: container id and interface required, netns optional (containerd's
    /// second DEL comes with an empty `CNI_NETNS`). No format checks: refusing a DEL could only
    /// leak what its ADD created.
    pub fn detach(&self) -> Result<DetachEnv, CniError> {
        let [container_id, ifname] = required([
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_IFNAME", &self.ifname),
        ])?;
        let netns = self.netns.clone().filter(|n| !n.is_empty());
        Ok(DetachEnv {
            container_id,
            ifname,
            netns,
        })
    }

    /// `CNI_ARGS`, parsed (empty when unset).
    pub fn cni_args(&self) -> Result<CniArgs, CniError> {
        CniArgs::parse(self.args.as_deref().unwrap_or(""))
    }
}

/// The values of `vars`, or one error naming every one that is missing or empty.
fn required<const N: usize>(vars: [(&str, &Option<String>); N]) -> Result<[String; N], CniError> {
    let missing: Vec<&str> = vars
        .iter()
        .filter(|(_, value)| value.as_deref().is_none_or(str::is_empty))
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        let (noun, verb) = if missing.len() == 1 {
            ("variable", "is")
        } else {
            ("variables", "are")
        };
        return Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "required environment {noun} {} {verb} missing or empty",
                missing.join(", ")
            ),
        ));
    }
    Ok(vars.map(|(_, value)| value.clone().unwrap_or_default()))
}

/// Spec 1.1 §"Parameters": alphanumeric first, then alphanumerics, `_`, `.` or `-`.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "CNI_CONTAINERID {id:?} is invalid: it must start with a letter or digit and \
                 contain only letters, digits, '_', '.' and '-'"
            ),
        ))
    }
}

/// Spec 1.1 §"Parameters": Linux interface name rules (`podswitch_proto::ifname_problem`).
fn validate_ifname(name: &str) -> Result<(), CniError> {
    match podswitch_proto::ifname_problem(name) {
        None => Ok(()),
        Some(problem) => Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_IFNAME {name:?} is not a valid interface name: {problem}"),
        )),
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach it.
    Del,
    /// Verify the attachment (0.4.0+).
    Check,
    /// Report supported versions.
    Version,
    /// Release attachments the runtime no longer knows (1.1.0+).
    Gc,
    /// Report readiness (1.1.0+).
    Status,
}

impl Command {
    /// Parses the exact spec spelling.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }
}

/// What ADD and CHECK are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// What DEL is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`; `None` when unset or empty.
    pub netns: Option<String>,
}

/// The `CNI_ARGS` keys podswitch knows. Empty values count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`: parsed so it is not "unknown"; equals `CNI_CONTAINERID`.
    pub pod_infra_container_id: Option<String>,
    /// `IP`: a requested IPv4 address (podman).
    pub ip: Option<Ipv4Addr>,
    /// `MAC`: a requested MAC (podman).
    pub mac: Option<MacAddr>,
}

const KNOWN_KEYS: &str = "K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, \
                          K8S_POD_INFRA_CONTAINER_ID, IP, MAC, IgnoreUnknown";

impl CniArgs {
    /// Parses `K=V;K=V`. Empty segments (a trailing `;`) are skipped; a value may contain `=`.
    /// An unknown key is code 2, naming key and value, unless `IgnoreUnknown` is true wherever
    /// it appears; a segment without `=` or with an empty key is code 4.
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for segment in raw.split(';').filter(|s| !s.is_empty()) {
            match segment.split_once('=') {
                Some((key, value)) if !key.is_empty() => pairs.push((key, value)),
                _ => {
                    return Err(CniError::new(
                        code::INVALID_ENVIRONMENT,
                        format!("CNI_ARGS entry {segment:?} is not KEY=VALUE (in {raw:?})"),
                    ))
                }
            }
        }
        let ignore_unknown = match pairs.iter().rev().find(|(k, _)| *k == "IgnoreUnknown") {
            Some((_, value)) => parse_bool(value)?,
            None => false,
        };
        let mut args = CniArgs::default();
        for (key, value) in pairs {
            let text = (!value.is_empty()).then(|| value.to_string());
            match key {
                "K8S_POD_NAMESPACE" => args.pod_namespace = text,
                "K8S_POD_NAME" => args.pod_name = text,
                "K8S_POD_UID" => args.pod_uid = text,
                "K8S_POD_INFRA_CONTAINER_ID" => args.pod_infra_container_id = text,
                "IP" => args.ip = text.as_deref().map(parse_ip).transpose()?,
                "MAC" => args.mac = text.as_deref().map(parse_mac).transpose()?,
                "IgnoreUnknown" => {}
                _ if ignore_unknown => {}
                _ => {
                    return Err(CniError::new(
                        code::UNSUPPORTED_FIELD,
                        format!(
                            "CNI_ARGS key {key:?} (value {value:?}) is not supported; known keys \
                             are {KNOWN_KEYS}; add IgnoreUnknown=1 to ignore unknown keys"
                        ),
                    ))
                }
            }
        }
        Ok(args)
    }
}

fn parse_bool(value: &str) -> Result<bool, CniError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_ARGS IgnoreUnknown={value:?} is not a boolean: use 1, true, 0 or false"),
        )),
    }
}

fn parse_ip(value: &str) -> Result<Ipv4Addr, CniError> {
    match value.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_ARGS IP={value} is IPv6; podswitch assigns IPv4 addresses only"),
        )),
        Err(_) => Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_ARGS IP={value:?} is not an IPv4 address such as 10.244.1.7"),
        )),
    }
}

fn parse_mac(value: &str) -> Result<MacAddr, CniError> {
    value.parse().map_err(|_| {
        CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_ARGS MAC={value:?} is not a MAC address such as 02:42:ac:11:00:02"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> RawEnv {
        RawEnv::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn kubernetes_args_from_containerd_are_parsed() {
        let args = CniArgs::parse(
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=1b2c-3d;IgnoreUnknown=1",
        )
        .unwrap();
        assert_eq!(
            args,
            CniArgs {
                pod_namespace: Some("default".into()),
                pod_name: Some("web-0".into()),
                pod_uid: Some("1b2c-3d".into()),
                pod_infra_container_id: Some("c0ffee".into()),
                ip: None,
                mac: None,
            }
        );
    }

    #[test]
    fn podman_ip_and_mac_requests_are_parsed() {
        let args = CniArgs::parse("IgnoreUnknown=1;IP=10.88.0.5;MAC=02:42:AC:11:00:02").unwrap();
        assert_eq!(args.ip, Some(Ipv4Addr::new(10, 88, 0, 5)));
        assert_eq!(
            args.mac,
            Some(MacAddr::new(0x02, 0x42, 0xac, 0x11, 0x00, 0x02))
        );
    }

    #[test]
    fn unknown_key_is_code_2_naming_key_and_value() {
        let err = CniArgs::parse("K8S_POD_NAME=web;FOO=bar").unwrap_err();
        assert_eq!(err.code, code::UNSUPPORTED_FIELD);
        assert!(
            err.msg.contains("\"FOO\"") && err.msg.contains("\"bar\""),
            "{err}"
        );
        assert!(err.msg.contains("IgnoreUnknown"), "{err}");
    }

    #[test]
    fn ignore_unknown_applies_wherever_it_appears() {
        for raw in [
            "FOO=bar;IgnoreUnknown=1",
            "IgnoreUnknown=true;FOO=bar",
            "FOO=bar;IgnoreUnknown=TRUE",
        ] {
            assert!(CniArgs::parse(raw).is_ok(), "{raw}");
        }
        assert_eq!(
            CniArgs::parse("FOO=bar;IgnoreUnknown=0").unwrap_err().code,
            code::UNSUPPORTED_FIELD
        );
    }

    #[test]
    fn ignore_unknown_with_a_non_boolean_is_code_4() {
        let err = CniArgs::parse("IgnoreUnknown=yes").unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT);
        assert!(err.msg.contains("IgnoreUnknown"), "{err}");
    }

    #[test]
    fn ignore_unknown_does_not_excuse_a_bad_known_value() {
        let err = CniArgs::parse("IgnoreUnknown=1;IP=10.88.0").unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT);
        assert!(err.msg.contains("IP="), "{err}");
        let err = CniArgs::parse("IP=fd00::5").unwrap_err();
        assert!(err.msg.contains("IPv4"), "{err}");
        let err = CniArgs::parse("MAC=02:42:ac:11:00").unwrap_err();
        assert!(err.msg.contains("MAC="), "{err}");
    }

    #[test]
    fn malformed_pair_is_code_4() {
        for raw in ["K8S_POD_NAME", "=web", "K8S_POD_NAME=web;oops"] {
            let err = CniArgs::parse(raw).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENVIRONMENT, "{raw}");
            assert!(err.msg.contains("KEY=VALUE"), "{err}");
        }
    }

    #[test]
    fn empty_args_trailing_separator_and_empty_values_are_accepted() {
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        let args = CniArgs::parse("K8S_POD_NAME=web;K8S_POD_UID=;IP=;").unwrap();
        assert_eq!(args.pod_name.as_deref(), Some("web"));
        assert_eq!(args.pod_uid, None);
        assert_eq!(args.ip, None);
    }

    #[test]
    fn commands_are_the_exact_spec_spellings() {
        assert_eq!(
            env(&[("CNI_COMMAND", "GC")]).command().unwrap(),
            Command::Gc
        );
        for bad in [
            env(&[]),
            env(&[("CNI_COMMAND", "add")]),
            env(&[("CNI_COMMAND", "")]),
        ] {
            assert_eq!(bad.command().unwrap_err().code, code::INVALID_ENVIRONMENT);
        }
    }

    #[test]
    fn add_names_every_missing_variable() {
        let err = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", ""),
        ])
        .attach(true)
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT);
        assert!(
            err.msg.contains("CNI_NETNS, CNI_IFNAME are missing"),
            "{err}"
        );
    }

    #[test]
    fn add_refuses_malformed_identities() {
        let base = [
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/proc/42/ns/net"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert!(env(&base).attach(true).is_ok());
        let cases: [(usize, &str, &str); 4] = [
            (0, "-c1", "CNI_CONTAINERID"),
            (1, "netns/x", "CNI_NETNS"),
            (2, "a-very-long-ifname", "CNI_IFNAME"),
            (2, "eth 0", "CNI_IFNAME"),
        ];
        for (index, value, var) in cases {
            let mut vars = base;
            vars[index].1 = value;
            let err = env(&vars).attach(true).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENVIRONMENT);
            assert!(err.msg.contains(var), "{err}");
            assert!(
                env(&vars).attach(false).is_ok(),
                "CHECK does not check the form"
            );
        }
    }

    #[test]
    fn del_works_with_an_empty_or_missing_netns() {
        for netns in [None, Some(""), Some("/var/run/netns/x")] {
            let mut vars = vec![("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")];
            if let Some(n) = netns {
                vars.push(("CNI_NETNS", n));
            }
            let del = env(&vars).detach().unwrap();
            assert_eq!(del.netns.as_deref(), netns.filter(|n| !n.is_empty()));
        }
        let err = env(&[("CNI_CONTAINERID", "c1")]).detach().unwrap_err();
        assert!(err.msg.contains("CNI_IFNAME is missing"), "{err}");
    }
}
