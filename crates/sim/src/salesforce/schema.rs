//! Object and field metadata: what `describe` reports and what queries and updates are checked
//! against.

use serde_json::{Value, json};

/// A field's Salesforce type, as `describe` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Textarea,
    Email,
    Phone,
    Boolean,
    Double,
    Date,
    DateTime,
    Picklist,
    MultiPicklist,
    Reference,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::String => "string",
            Self::Textarea => "textarea",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Boolean => "boolean",
            Self::Double => "double",
            Self::Date => "date",
            Self::DateTime => "datetime",
            Self::Picklist => "picklist",
            Self::MultiPicklist => "multipicklist",
            Self::Reference => "reference",
        }
    }

    fn soap_type(self) -> &'static str {
        match self {
            Self::Id | Self::Reference => "tns:ID",
            Self::Boolean => "xsd:boolean",
            Self::Double => "xsd:double",
            Self::Date => "xsd:date",
            Self::DateTime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }
}

/// One field of an object, as `describe` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    pub label: String,
    pub field_type: FieldType,
    /// A formula field: read-only, and its value changes without `SystemModstamp` moving.
    pub calculated: bool,
    pub nillable: bool,
    pub length: u32,
    pub picklist_values: Vec<String>,
    /// For references: the object pointed to, and the name used to traverse it in SOQL.
    pub reference_to: Option<String>,
    pub relationship_name: Option<String>,
    /// System fields (Id, SystemModstamp, IsDeleted...) cannot be written by an update.
    pub updateable: bool,
}

impl FieldSpec {
    fn new(name: &str, label: &str, field_type: FieldType) -> Self {
        let length = match field_type {
            FieldType::String | FieldType::Phone | FieldType::Picklist => 255,
            FieldType::Email => 80,
            FieldType::Textarea => 255,
            FieldType::MultiPicklist => 4099,
            FieldType::Id | FieldType::Reference => 18,
            _ => 0,
        };
        Self {
            name: name.to_owned(),
            label: label.to_owned(),
            field_type,
            calculated: false,
            nillable: !matches!(field_type, FieldType::Boolean | FieldType::Id),
            length,
            picklist_values: Vec::new(),
            reference_to: None,
            relationship_name: None,
            updateable: true,
        }
    }

    pub fn text(name: &str, label: &str) -> Self {
        Self::new(name, label, FieldType::String)
    }

    pub fn checkbox(name: &str, label: &str) -> Self {
        Self::new(name, label, FieldType::Boolean)
    }

    pub fn picklist(name: &str, label: &str, values: &[&str]) -> Self {
        let mut spec = Self::new(name, label, FieldType::Picklist);
        spec.picklist_values = values.iter().map(|v| (*v).to_owned()).collect();
        spec
    }

    pub fn multipicklist(name: &str, label: &str, values: &[&str]) -> Self {
        let mut spec = Self::new(name, label, FieldType::MultiPicklist);
        spec.picklist_values = values.iter().map(|v| (*v).to_owned()).collect();
        spec
    }

    pub fn double(name: &str, label: &str) -> Self {
        Self::new(name, label, FieldType::Double)
    }

    pub fn date(name: &str, label: &str) -> Self {
        Self::new(name, label, FieldType::Date)
    }

    pub fn datetime(name: &str, label: &str) -> Self {
        Self::new(name, label, FieldType::DateTime)
    }

    /// A formula field of the given result type (`calculated: true`, read-only).
    pub fn formula(name: &str, label: &str, field_type: FieldType) -> Self {
        let mut spec = Self::new(name, label, field_type);
        spec.calculated = true;
        spec.updateable = false;
        spec
    }

    pub fn reference(name: &str, label: &str, to: &str, relationship: &str) -> Self {
        let mut spec = Self::new(name, label, FieldType::Reference);
        spec.reference_to = Some(to.to_owned());
        spec.relationship_name = Some(relationship.to_owned());
        spec
    }

    fn system(mut self) -> Self {
        self.updateable = false;
        self
    }

    pub fn is_custom(&self) -> bool {
        self.name.ends_with("__c")
    }

    pub fn describe(&self) -> Value {
        let picklist: Vec<Value> = self
            .picklist_values
            .iter()
            .map(|v| json!({"active": true, "defaultValue": false, "label": v, "validFor": null, "value": v}))
            .collect();
        let is_id = self.field_type == FieldType::Id;
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.field_type.as_str(),
            "soapType": self.field_type.soap_type(),
            "calculated": self.calculated,
            "calculatedFormula": if self.calculated { Value::from("/* formula */") } else { Value::Null },
            "custom": self.is_custom(),
            "nillable": self.nillable,
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": if self.field_type == FieldType::Double { 18 } else { 0 },
            "scale": 0,
            "picklistValues": picklist,
            "referenceTo": self.reference_to.iter().collect::<Vec<_>>(),
            "relationshipName": self.relationship_name,
            "createable": self.updateable,
            "updateable": self.updateable,
            "filterable": true,
            "sortable": self.field_type != FieldType::MultiPicklist,
            "idLookup": is_id,
            "unique": false,
            "externalId": false,
            "defaultValue": if self.field_type == FieldType::Boolean { Value::from(false) } else { Value::Null },
        })
    }
}

/// An object (sObject type) with its fields.
#[derive(Clone, Debug)]
pub struct ObjectSchema {
    pub name: String,
    pub label: String,
    pub key_prefix: String,
    pub fields: Vec<FieldSpec>,
}

impl ObjectSchema {
    /// Field names in SOQL are case-insensitive.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn relationship(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }
}

/// The custom Contact fields a default simulator describes (SPEC.md's example org).
pub fn default_contact_custom_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::checkbox("Active__c", "Active"),
        FieldSpec::picklist(
            "HL_Member_Type__c",
            "Member Type",
            &["Gold", "Silver", "Bronze", "Student", "Retired"],
        ),
        FieldSpec::multipicklist(
            "HL_Committees__c",
            "Committees",
            &["Finance", "Events", "Education", "Membership", "Advocacy"],
        ),
        FieldSpec::checkbox("HL_Staff__c", "Staff"),
        FieldSpec::picklist(
            "HL_Chapter__c",
            "Chapter",
            &["Ohio", "Texas", "Québec", "Bavaria", "Kansai"],
        ),
        FieldSpec::double("HL_Join_Year__c", "Join Year"),
        FieldSpec::date("HL_Member_Since__c", "Member Since"),
        FieldSpec::formula("HL_Is_Board__c", "Is Board", FieldType::Boolean),
        // A "mod date" a Flow keeps, for `salesforce.cursor_field`; the simulator does not run
        // the Flow, so it moves only when a test sets it (and it is null on some Contacts).
        FieldSpec::datetime("Sync_Modified__c", "Sync Modified"),
    ]
}

fn audit_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::new("Id", "Record ID", FieldType::Id).system(),
        FieldSpec::checkbox("IsDeleted", "Deleted").system(),
        FieldSpec::datetime("CreatedDate", "Created Date").system(),
        FieldSpec::datetime("LastModifiedDate", "Last Modified Date").system(),
        FieldSpec::datetime("SystemModstamp", "System Modstamp").system(),
    ]
}

fn object(name: &str, label: &str, key_prefix: &str, fields: Vec<FieldSpec>) -> ObjectSchema {
    let mut all = audit_fields();
    all.extend(fields);
    ObjectSchema {
        name: name.to_owned(),
        label: label.to_owned(),
        key_prefix: key_prefix.to_owned(),
        fields: all,
    }
}

/// The standard objects the simulator serves, Contact carrying `contact_custom` as its custom fields.
pub fn standard_objects(contact_custom: Vec<FieldSpec>) -> Vec<ObjectSchema> {
    let mut contact_fields = vec![
        FieldSpec::text("FirstName", "First Name"),
        FieldSpec::text("LastName", "Last Name"),
        // A compound name the store derives from the parts: read-only, but not a formula.
        FieldSpec::text("Name", "Full Name").system(),
        FieldSpec::new("Email", "Email", FieldType::Email),
        FieldSpec::text("Title", "Title"),
        FieldSpec::new("Phone", "Business Phone", FieldType::Phone),
        FieldSpec::new("MobilePhone", "Mobile Phone", FieldType::Phone),
        FieldSpec::new("HomePhone", "Home Phone", FieldType::Phone),
        FieldSpec::new("MailingStreet", "Mailing Street", FieldType::Textarea),
        FieldSpec::text("MailingCity", "Mailing City"),
        FieldSpec::text("MailingState", "Mailing State/Province"),
        FieldSpec::text("MailingPostalCode", "Mailing Zip/Postal Code"),
        FieldSpec::text("MailingCountry", "Mailing Country"),
        FieldSpec::checkbox("HasOptedOutOfEmail", "Email Opt Out"),
        FieldSpec::reference("AccountId", "Account ID", "Account", "Account"),
        FieldSpec::reference("RecordTypeId", "Record Type ID", "RecordType", "RecordType"),
    ];
    // LastName is required on Contact.
    if let Some(last) = contact_fields.iter_mut().find(|f| f.name == "LastName") {
        last.nillable = false;
    }
    contact_fields.extend(contact_custom);
    vec![
        object("Contact", "Contact", "003", contact_fields),
        object(
            "Account",
            "Account",
            "001",
            vec![FieldSpec::text("Name", "Account Name")],
        ),
        object(
            "Campaign",
            "Campaign",
            "701",
            vec![
                FieldSpec::text("Name", "Campaign Name"),
                FieldSpec::new("Description", "Description", FieldType::Textarea),
                FieldSpec::picklist(
                    "Type",
                    "Type",
                    &["Event", "Webinar", "Email", "Conference", "Other"],
                ),
                FieldSpec::date("StartDate", "Start Date"),
                FieldSpec::date("EndDate", "End Date"),
                FieldSpec::checkbox("IsActive", "Active"),
            ],
        ),
        object(
            "CampaignMember",
            "Campaign Member",
            "00v",
            vec![
                FieldSpec::reference("CampaignId", "Campaign ID", "Campaign", "Campaign"),
                FieldSpec::reference("ContactId", "Contact ID", "Contact", "Contact"),
                FieldSpec::picklist(
                    "Status",
                    "Status",
                    &["Sent", "Registered", "Attended", "Responded"],
                ),
            ],
        ),
        object(
            "RecordType",
            "Record Type",
            "012",
            vec![
                FieldSpec::text("Name", "Record Type Name"),
                FieldSpec::text("DeveloperName", "Record Type Name (API)"),
                FieldSpec::text("SobjectType", "sObject Type Name"),
                FieldSpec::checkbox("IsActive", "Active"),
            ],
        ),
    ]
}
