//! Salesforce record Ids.
//!
//! Salesforce hands out 15-character Ids that are case-sensitive and 18-character Ids whose last
//! three characters encode the case of the first fifteen, so that systems which compare text
//! case-insensitively (Higher Logic among them) cannot confuse two records. hlsync keys every
//! member by the 18-character form, whatever form it was given.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The alphabet of the case-safe suffix: index = 5-bit mask of upper-case letters in a chunk.
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Why a text is not a Salesforce Id. Each message quotes the input so the operator can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "`{input}` is not a Salesforce Id: it has {len} characters, an Id has 15 or 18; check the field or message that carried it"
    )]
    /// Neither 15 nor 18 characters long.
    Length {
        /// The text given.
        input: String,
        /// Its length in characters.
        len: usize,
    },
    #[error(
        "`{input}` is not a Salesforce Id: character {position} is {found:?}, an Id holds only A-Z, a-z and 0-9"
    )]
    /// A character other than an ASCII letter or digit.
    Charset {
        /// The text given.
        input: String,
        /// Where the first bad character is (from 1).
        position: usize,
        /// The bad character.
        found: char,
    },
    #[error(
        "`{input}` is not a valid 18-character Salesforce Id: its suffix should be `{expected}` for the first 15 characters; the Id was probably altered (for example lower-cased) on its way here"
    )]
    /// 18 characters whose last three do not match the case of the first fifteen.
    Suffix {
        /// The text given.
        input: String,
        /// The suffix the first fifteen characters call for.
        expected: String,
    },
}

/// An 18-character case-safe Salesforce Id.
///
/// Built only through parsing (`"…".parse()`, `SfId::try_from`), so holding one proves the text
/// is a well-formed Id in canonical form: the first 15 characters as Salesforce wrote them and an
/// upper-case suffix.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SfId(String);

impl SfId {
    /// The 18-character form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 15-character (case-sensitive) form, for places that print or compare it.
    pub fn to_15(&self) -> &str {
        &self.0[..15]
    }

    /// The three-character key prefix that names the object type (`003` is Contact, `001`
    /// Account, `701` Campaign, `00v` CampaignMember).
    pub fn key_prefix(&self) -> &str {
        &self.0[..3]
    }
}

/// The documented case-safe suffix: each 5-character chunk contributes one character whose
/// index is the bit mask of its upper-case letters (bit i set when character i is A-Z).
fn suffix_of(first15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (slot, chunk) in out.iter_mut().zip(first15.chunks(5)) {
        let mask = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        *slot = SUFFIX_ALPHABET[mask];
    }
    out
}

impl FromStr for SfId {
    type Err = IdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // Count characters, not bytes, so a multi-byte character gives a charset error that
        // names it rather than a confusing length.
        let len = input.chars().count();
        if len != 15 && len != 18 {
            return Err(IdError::Length {
                input: input.to_owned(),
                len,
            });
        }
        if let Some((position, found)) = input
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
        {
            return Err(IdError::Charset {
                input: input.to_owned(),
                position: position + 1,
                found,
            });
        }
        let bytes = input.as_bytes();
        let suffix = suffix_of(&bytes[..15]);
        if len == 18 && !bytes[15..].eq_ignore_ascii_case(&suffix) {
            return Err(IdError::Suffix {
                input: input.to_owned(),
                expected: String::from_utf8_lossy(&suffix).into_owned(),
            });
        }
        let mut canonical = String::with_capacity(18);
        canonical.push_str(&input[..15]);
        canonical.push_str(&String::from_utf8_lossy(&suffix));
        Ok(SfId(canonical))
    }
}

impl TryFrom<&str> for SfId {
    type Error = IdError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl TryFrom<String> for SfId {
    type Error = IdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl AsRef<str> for SfId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SfId({})", self.0)
    }
}

impl Serialize for SfId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SfId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn documented_pair_15_to_18() {
        let id: SfId = "001A0000006Vm9r".parse().unwrap();
        assert_eq!(id.as_str(), "001A0000006Vm9rIAC");
        assert_eq!(id.to_15(), "001A0000006Vm9r");
        assert_eq!(id.key_prefix(), "001");
    }

    #[test]
    fn all_lower_case_chunks_give_aaa() {
        let id: SfId = "003000000000001".parse().unwrap();
        assert_eq!(id.as_str(), "003000000000001AAA");
    }

    #[test]
    fn all_upper_case_chunk_gives_5() {
        // Mask 0b11111 = 31 is the last letter of the alphabet, '5'.
        let id: SfId = "ABCDEabcde00000".parse().unwrap();
        assert_eq!(id.as_str(), "ABCDEabcde000005AA");
    }

    #[test]
    fn accepts_matching_18() {
        let id: SfId = "001A0000006Vm9rIAC".parse().unwrap();
        assert_eq!(id.as_str(), "001A0000006Vm9rIAC");
    }

    #[test]
    fn lower_case_suffix_is_canonicalised() {
        let id: SfId = "001A0000006Vm9riac".parse().unwrap();
        assert_eq!(id.as_str(), "001A0000006Vm9rIAC");
    }

    #[test]
    fn rejects_wrong_suffix() {
        let err = "001A0000006Vm9rAAA".parse::<SfId>().unwrap_err();
        assert!(matches!(err, IdError::Suffix { .. }));
        assert!(err.to_string().contains("001A0000006Vm9rAAA"));
        assert!(err.to_string().contains("IAC"));
    }

    #[test]
    fn rejects_bad_length_naming_input() {
        let err = "003abc".parse::<SfId>().unwrap_err();
        assert_eq!(
            err,
            IdError::Length {
                input: "003abc".into(),
                len: 6
            }
        );
        assert!(err.to_string().contains("`003abc`"));
    }

    #[test]
    fn rejects_bad_charset() {
        let err = "003-00000000001".parse::<SfId>().unwrap_err();
        assert!(matches!(
            err,
            IdError::Charset {
                position: 4,
                found: '-',
                ..
            }
        ));
        // A multi-byte character must not panic on slicing.
        assert!("00300000000000é".parse::<SfId>().is_err());
        assert!("00300000000000é123".parse::<SfId>().is_err());
    }

    #[test]
    fn serde_as_string() {
        let id: SfId = "003000000000001".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"003000000000001AAA\"");
        let back: SfId = serde_json::from_str("\"003000000000001\"").unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<SfId>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn round_trip_15_18_15(s in "[A-Za-z0-9]{15}") {
            let id: SfId = s.parse().unwrap();
            prop_assert_eq!(id.as_str().len(), 18);
            prop_assert_eq!(id.to_15(), s.as_str());
            let again: SfId = id.as_str().parse().unwrap();
            prop_assert_eq!(&again, &id);
            let from_15: SfId = id.to_15().parse().unwrap();
            prop_assert_eq!(from_15, id);
        }

        #[test]
        fn suffix_tells_case_apart(s in "[a-z0-9]{15}", flip in 0usize..15) {
            // Two Ids that differ only in the case of one letter get different 18-char forms:
            // the whole point of the suffix.
            prop_assume!(s.as_bytes()[flip].is_ascii_lowercase());
            let mut upper = s.clone().into_bytes();
            upper[flip] = upper[flip].to_ascii_uppercase();
            let upper = String::from_utf8(upper).unwrap();
            let a: SfId = s.parse().unwrap();
            let b: SfId = upper.parse().unwrap();
            prop_assert!(!a.as_str().eq_ignore_ascii_case(b.as_str()));
        }
    }
}
