//! The rule for the API names that go into URLs, and the describe's documented shape. Fields are
//! discovered at run time (HL_ fields), so the client reads and caches describes
//! ([`SalesforceClient::describe`](crate::SalesforceClient::describe), in `client.rs`, which owns
//! the cache) into core's [`Describe`], the type the sync's ports speak; this module makes no
//! call, so the client can name its rules without a cycle between the two.

#[cfg(test)]
use hlsync_core::schema::Describe;

use crate::error::SfError;

/// Object and field names go into URLs and request bodies: only API names are let through.
pub(crate) fn check_api_name(name: &str) -> Result<(), SfError> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SfError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsync_core::schema::FieldType;

    #[test]
    fn api_names_are_checked() {
        assert!(check_api_name("Contact").is_ok());
        assert!(check_api_name("HL_Member_Type__c").is_ok());
        assert!(check_api_name("Contact/../limits").is_err());
        assert!(check_api_name("Account.Name").is_err());
        assert!(check_api_name("").is_err());
    }

    #[test]
    fn converts_documented_describe_shape() {
        let d: Describe = serde_json::from_str(
            r#"{"name":"Contact","fields":[
                {"name":"Id","label":"Contact ID","type":"id","calculated":false,"nillable":false},
                {"name":"HL_Is_Board__c","label":"Board","type":"boolean","calculated":true}],
               "recordTypeInfos":[{"active":true,"available":true,"defaultRecordTypeMapping":true,
                 "developerName":"Master","master":true,"name":"Master","recordTypeId":"012000000000000AAA",
                 "urls":{"layout":"/services/data/v62.0/sobjects/Contact/describe/layouts/012000000000000AAA"}}]}"#,
        )
        .unwrap();
        assert_eq!(d.fields.len(), 2);
        assert!(d.field("hl_is_board__c").unwrap().calculated);
        assert_eq!(d.field("Id").unwrap().field_type, FieldType::from_sf("id"));
        assert_eq!(d.record_types[0].developer_name, "Master");
        assert_eq!(d.record_types[0].id.as_str(), "012000000000000AAA");
    }
}
