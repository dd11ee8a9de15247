//! What the plugin prints: the ADD result, the VERSION answer and the error object, each in the
//! format of the config's `cniVersion` (spec 1.1 §"Result Types"; 0.4.0 §"Result"). The shapes
//! are typed so that field names cannot drift; unknown fields of a `prevResult` are carried
//! through untouched, as the spec asks of a plugin in a chain.

use crate::version::CniVersion;
use podswitch_proto::control::Attachment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// CNI error codes (spec 1.1 §"Error"). 1-99 are the spec's; podswitch-control's own start at 100
/// and pass through unchanged.
pub mod code {
    /// The config's `cniVersion` is not one the plugin speaks, or lacks the command.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A field the plugin does not support; the message names key and value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A required `CNI_*` variable is missing or invalid; the message names it.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// An I/O failure, here: the control socket misbehaved.
    pub const IO_FAILURE: u32 = 5;
    /// stdin could not be decoded.
    pub const DECODE_FAILURE: u32 = 6;
    /// The network config is well-formed JSON but not a valid config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Transient: the runtime should retry later (control not up yet, or busy).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now (spec 1.1).
    pub const NOT_AVAILABLE: u32 = 50;
}

/// A CNI error: printed as `{"cniVersion", "code", "msg", "details"}` with exit status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// See [`code`].
    pub code: u32,
    /// What went wrong and, where it helps, what to do.
    pub msg: String,
    /// Lower-level detail (the underlying error); omitted from the JSON when empty.
    pub details: String,
}

impl CniError {
    /// An error without details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details` set.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object in `version`'s format (the same shape in every supported version).
    pub fn to_json(&self, version: CniVersion) -> String {
        #[derive(Serialize)]
        struct ErrorJson<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        to_json_line(&ErrorJson {
            cni_version: version.as_str(),
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// The VERSION answer: `{"cniVersion": V, "supportedVersions": [...]}`.
pub fn version_json(cni_version: &str) -> String {
    #[derive(Serialize)]
    struct VersionJson<'a> {
        #[serde(rename = "cniVersion")]
        cni_version: &'a str,
        #[serde(rename = "supportedVersions")]
        supported_versions: [&'static str; 5],
    }
    to_json_line(&VersionJson {
        cni_version,
        supported_versions: CniVersion::SUPPORTED.map(CniVersion::as_str),
    })
}

/// A CNI result (ADD output, or a `prevResult` handed in by the runtime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// The version the result is written in.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Interfaces, referred to by index from `ips`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings; podswitch sets none (`{}`), the runtime's own DNS applies.
    #[serde(default = "empty_object")]
    pub dns: Value,
    /// Fields this plugin does not interpret, kept as they came.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One `interfaces` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The netns path; absent for host-side interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Fields this plugin does not interpret (1.1's `mtu`, `socketPath`, ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One `ips` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"` or `"6"`: present up to 0.4.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Address with prefix length, `10.244.1.7/32`.
    pub address: String,
    /// Gateway address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Fields this plugin does not interpret.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One `routes` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix.
    pub dst: String,
    /// Next hop; absent for the interface's default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// Fields this plugin does not interpret (1.1's `mtu`, `table`, ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

const DEFAULT_ROUTE: &str = "0.0.0.0/0";

impl CniResult {
    /// The ADD result for `attachment`, in `version`'s format.
    ///
    /// With a `prev` result (podswitch chained after another plugin) the pod's interface,
    /// address and route are appended to it, as the spec asks ("pass it through, or modify it
    /// appropriately"); a default route already there is kept and not doubled.
    pub fn for_attachment(
        version: CniVersion,
        attachment: &Attachment,
        prev: Option<CniResult>,
    ) -> CniResult {
        let mut result = prev.unwrap_or_else(|| CniResult {
            cni_version: String::new(),
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: empty_object(),
            other: Map::new(),
        });
        result.cni_version = version.as_str().to_string();
        let index = result.interfaces.len();
        result.interfaces.push(Interface {
            name: attachment.ifname.clone(),
            mac: Some(attachment.mac.to_string()),
            sandbox: Some(attachment.netns.clone()),
            other: Map::new(),
        });
        result.ips.push(IpConfig {
            version: None,
            address: format!("{}/{}", attachment.ip, attachment.prefix_len),
            gateway: Some(attachment.gateway.to_string()),
            interface: Some(index),
            other: Map::new(),
        });
        if !result.routes.iter().any(|r| r.dst == DEFAULT_ROUTE) {
            result.routes.push(Route {
                dst: DEFAULT_ROUTE.to_string(),
                gw: Some(attachment.gateway.to_string()),
                other: Map::new(),
            });
        }
        for ip in &mut result.ips {
            ip.version = if version.ips_carry_version() {
                Some(ip.version.take().unwrap_or_else(|| family_of(&ip.address)))
            } else {
                None
            };
        }
        if result.dns.is_null() {
            result.dns = empty_object();
        }
        result
    }

    /// The result as one line of JSON.
    pub fn to_json(&self) -> String {
        to_json_line(self)
    }
}

/// `"6"` for an IPv6 address, `"4"` otherwise: the 0.x `version` of an `ips` entry.
fn family_of(address: &str) -> String {
    if address.contains(':') { "6" } else { "4" }.to_string()
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn to_json_line<T: Serialize>(value: &T) -> String {
    // These types hold only strings, numbers and JSON values: serializing them cannot fail.
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::MacAddr;
    use serde_json::json;
    use std::net::Ipv4Addr;

    fn attachment() -> Attachment {
        Attachment {
            container_id: "c0ffee".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/cni-1234".into(),
            mac: MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07),
            ip: Ipv4Addr::new(10, 244, 1, 7),
            prefix_len: 32,
            gateway: Ipv4Addr::new(10, 244, 1, 1),
            port: "psw-c0ffee".into(),
        }
    }

    fn parsed(text: &str) -> Value {
        assert!(text.ends_with('\n'), "output ends with a newline");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn add_result_1_0_0_has_the_spec_shape_without_ip_versions() {
        let r = CniResult::for_attachment(CniVersion::V1_0_0, &attachment(), None);
        assert_eq!(
            parsed(&r.to_json()),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:07",
                                "sandbox": "/var/run/netns/cni-1234"}],
                "ips": [{"address": "10.244.1.7/32", "gateway": "10.244.1.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn add_result_0_4_0_ips_carry_version_4() {
        let r = CniResult::for_attachment(CniVersion::V0_4_0, &attachment(), None);
        assert_eq!(
            parsed(&r.to_json()),
            json!({
                "cniVersion": "0.4.0",
                "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:07",
                                "sandbox": "/var/run/netns/cni-1234"}],
                "ips": [{"version": "4", "address": "10.244.1.7/32", "gateway": "10.244.1.1",
                         "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn add_result_1_1_0_and_0_3_1_differ_only_in_version_fields() {
        let new =
            parsed(&CniResult::for_attachment(CniVersion::V1_1_0, &attachment(), None).to_json());
        let old =
            parsed(&CniResult::for_attachment(CniVersion::V0_3_1, &attachment(), None).to_json());
        assert_eq!(new["cniVersion"], "1.1.0");
        assert_eq!(old["cniVersion"], "0.3.1");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(new["interfaces"], old["interfaces"]);
        assert_eq!(new["routes"], old["routes"]);
    }

    #[test]
    fn chained_add_appends_to_prev_result_and_keeps_unknown_fields() {
        let prev: CniResult = serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "tap9", "mtu": 9000}],
            "ips": [{"address": "fd00::5/64", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
            "dns": {"nameservers": ["192.0.2.53"]},
            "x-vendor": true
        }))
        .unwrap();
        let r = CniResult::for_attachment(CniVersion::V0_4_0, &attachment(), Some(prev));
        let v = parsed(&r.to_json());
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["interfaces"][0], json!({"name": "tap9", "mtu": 9000}));
        assert_eq!(v["interfaces"][1]["name"], "eth0");
        assert_eq!(v["ips"][0]["version"], "6");
        assert_eq!(v["ips"][1]["interface"], 1);
        assert_eq!(
            v["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}])
        );
        assert_eq!(v["dns"], json!({"nameservers": ["192.0.2.53"]}));
        assert_eq!(v["x-vendor"], true);
    }

    #[test]
    fn error_json_carries_version_code_msg_and_details() {
        let e = CniError::new(code::TRY_AGAIN_LATER, "podswitch-control is not running")
            .with_details("connect: No such file or directory");
        assert_eq!(
            parsed(&e.to_json(CniVersion::V1_0_0)),
            json!({"cniVersion": "1.0.0", "code": 11, "msg": "podswitch-control is not running",
                   "details": "connect: No such file or directory"})
        );
    }

    #[test]
    fn error_json_omits_empty_details() {
        let e = CniError::new(code::INVALID_ENVIRONMENT, "CNI_IFNAME is missing");
        assert_eq!(
            parsed(&e.to_json(CniVersion::V0_4_0)),
            json!({"cniVersion": "0.4.0", "code": 4, "msg": "CNI_IFNAME is missing"})
        );
    }

    #[test]
    fn version_json_lists_every_supported_version() {
        assert_eq!(
            parsed(&version_json("1.1.0")),
            json!({"cniVersion": "1.1.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
}
