//! The CNI spec versions the plugin speaks. The network config's `cniVersion` picks one, and
//! every answer (result, error, VERSION) is written in that version's format.

/// A CNI spec version podswitch-cni accepts in a network config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.3.0: rich results (`interfaces`, `ips` with `version`), chaining.
    V0_3_0,
    /// 0.3.1: a typo fix of 0.3.0.
    V0_3_1,
    /// 0.4.0: adds CHECK and `prevResult` on DEL.
    V0_4_0,
    /// 1.0.0: drops `version` from `ips` entries.
    V1_0_0,
    /// 1.1.0: adds GC and STATUS.
    V1_1_0,
}

impl CniVersion {
    /// Every version accepted, oldest first (the order VERSION lists them in).
    pub const SUPPORTED: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest version: used when the input names none we know.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// Parses `"1.0.0"` and friends; `None` for versions the plugin does not speak.
    pub fn parse(s: &str) -> Option<CniVersion> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// The version as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Whether `ips` entries carry `"version": "4"` (0.3.x and 0.4.0; removed in 1.0.0).
    pub fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// Whether CHECK exists in this version (introduced in 0.4.0).
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// Whether GC and STATUS exist in this version (introduced in 1.1.0).
    pub fn has_gc_and_status(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// The supported versions as one human-readable list, for error messages.
    pub fn supported_list() -> String {
        Self::SUPPORTED.map(CniVersion::as_str).join(", ")
    }
}

/// The `cniVersion` string of `stdin` if it is a JSON object naming one, whatever its value.
pub fn raw_version_of(stdin: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    Some(value.get("cniVersion")?.as_str()?.to_string())
}

/// The version to answer an error in: the config's, when it is one we speak, else the latest.
pub fn answer_version_of(stdin: &[u8]) -> CniVersion {
    raw_version_of(stdin)
        .and_then(|v| CniVersion::parse(&v))
        .unwrap_or(CniVersion::LATEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_round_trips_and_others_are_refused() {
        for v in CniVersion::SUPPORTED {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
        for s in ["0.1.0", "0.2.0", "1.2.0", "1.0", "", "v1.0.0"] {
            assert_eq!(CniVersion::parse(s), None, "{s}");
        }
    }

    #[test]
    fn features_follow_the_spec_history() {
        assert!(CniVersion::V0_4_0.ips_carry_version());
        assert!(!CniVersion::V1_0_0.ips_carry_version());
        assert!(!CniVersion::V0_3_1.has_check());
        assert!(CniVersion::V0_4_0.has_check());
        assert!(!CniVersion::V1_0_0.has_gc_and_status());
        assert!(CniVersion::V1_1_0.has_gc_and_status());
    }

    #[test]
    fn errors_answer_in_the_config_version_or_the_latest() {
        assert_eq!(
            answer_version_of(br#"{"cniVersion":"0.4.0"}"#),
            CniVersion::V0_4_0
        );
        assert_eq!(
            answer_version_of(br#"{"cniVersion":"0.2.0"}"#),
            CniVersion::LATEST
        );
        assert_eq!(answer_version_of(b"not json"), CniVersion::LATEST);
        assert_eq!(answer_version_of(b""), CniVersion::LATEST);
    }
}
