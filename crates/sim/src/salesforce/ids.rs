//! Salesforce record Ids: 15-character case-sensitive Ids and their 18-character case-safe form.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The three characters Salesforce appends to a 15-character Id so that Ids stay distinct in
/// case-insensitive systems: one character per 5-character chunk, whose bits mark which
/// characters of the chunk are upper-case letters (bit 0 = first character).
pub fn case_safe_suffix(id15: &str) -> Option<String> {
    let bytes = id15.as_bytes();
    if bytes.len() != 15 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let suffix = bytes
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            char::from(SUFFIX_ALPHABET[bits])
        })
        .collect();
    Some(suffix)
}

/// The 18-character form of a 15- or 18-character Id; `None` when `id` is not a well-formed Id.
/// An 18-character Id is accepted only when its suffix matches, as Salesforce does.
pub fn to_18(id: &str) -> Option<String> {
    match id.len() {
        15 => case_safe_suffix(id).map(|suffix| format!("{id}{suffix}")),
        18 => {
            let (head, tail) = id.split_at(15);
            let suffix = case_safe_suffix(head)?;
            // The suffix is case-insensitive: that is the point of it.
            suffix
                .eq_ignore_ascii_case(tail)
                .then(|| format!("{head}{suffix}"))
        }
        _ => None,
    }
}

/// Builds the `seq`-th Id of an object: key prefix (3) + two "instance" characters + a
/// reserved `0` + a 9-character base-62 counter, then the case-safe suffix. Base 62 in ASCII
/// order keeps Ids sorted by creation, as Salesforce's roughly are.
pub fn make_id(prefix: &str, instance: &str, seq: u64) -> String {
    let mut counter = [b'0'; 9];
    let mut n = seq;
    for slot in counter.iter_mut().rev() {
        // `n % 62` is below 62, so the index is in range.
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let counter: String = counter.iter().map(|b| char::from(*b)).collect();
    let id15 = format!("{prefix:.3}{instance:.2}0{counter}");
    let suffix = case_safe_suffix(&id15).unwrap_or_default();
    format!("{id15}{suffix}")
}

/// The key prefix (first three characters) of an Id.
pub fn key_prefix(id: &str) -> &str {
    id.get(..3).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_marks_upper_case_positions() {
        // Chunk "00300" has no capitals -> A; "Dn00A" has capitals at 0 and 4 -> bits 10001 = 17 -> R.
        assert_eq!(case_safe_suffix("00300Dn00A00000").as_deref(), Some("ARA"));
        assert_eq!(case_safe_suffix("AAAAABBBBBzzzzz").as_deref(), Some("55A"));
        assert_eq!(case_safe_suffix("short"), None);
        assert_eq!(case_safe_suffix("00300-n00A00000"), None);
    }

    #[test]
    fn ids_differing_only_in_case_get_different_suffixes() {
        let a = to_18("003000000000aBc").unwrap();
        let b = to_18("003000000000AbC").unwrap();
        assert_ne!(a.to_ascii_lowercase(), b.to_ascii_lowercase());
    }

    #[test]
    fn to_18_accepts_both_forms_and_rejects_bad_suffixes() {
        let id = make_id("003", "Sm", 12_345);
        assert_eq!(id.len(), 18);
        assert_eq!(to_18(&id[..15]).as_deref(), Some(id.as_str()));
        assert_eq!(
            to_18(&id.to_ascii_lowercase()[..]).is_some(),
            id[..15] == id.to_ascii_lowercase()[..15]
        );
        let mut wrong = id[..15].to_owned();
        wrong.push_str("999");
        assert_eq!(to_18(&wrong), None);
        assert_eq!(to_18("nope"), None);
    }

    #[test]
    fn made_ids_sort_by_sequence() {
        let ids: Vec<String> = [1, 2, 61, 62, 63, 4000, 1_000_000]
            .iter()
            .map(|n| make_id("001", "Sm", *n))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| id.starts_with("001Sm0")));
    }
}
