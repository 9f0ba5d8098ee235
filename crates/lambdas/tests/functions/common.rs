//! A deployed hlsync in one process: moto for DynamoDB, SQS and Secrets Manager, the two
//! simulators for Salesforce and Higher Logic, and the `Runtime` the functions build at cold
//! start, bound to them. Each test gets its own resources (provisioned as `hlsync provision`
//! does), simulators and runtime; the test binary shares one moto (`hlsync_sim::moto::shared`).

#![allow(dead_code)] // each test binary uses a different part of this

use std::time::{Duration, SystemTime};

use hlsync_aws::{Clients, SqsQueue, local_sdk_config};
use hlsync_cli::provision::provision_with_secret;
use hlsync_core::config::Config;
use hlsync_sim::higher_logic::{HigherLogicSim, HlSimOptions};
pub use hlsync_sim::moto::shared as moto;
use hlsync_sim::salesforce::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SalesforceSim, SimOptions};
use hlsync_sync::runtime::{Resources, Runtime};
use lambda_runtime::Context;
use serde_json::{Map, Value, json};

pub struct Deployment {
    pub sf: SalesforceSim,
    pub hl: HigherLogicSim,
    pub rt: Runtime,
    pub queue: SqsQueue,
    pub dlq: SqsQueue,
}

/// What to change from a working deployment.
#[derive(Default)]
pub struct Setup {
    /// The Higher Logic API key put in the secret (default: the one the simulator accepts).
    pub hl_api_key: Option<String>,
}

pub async fn deploy(setup: Setup) -> Deployment {
    let sf = SalesforceSim::start(SimOptions::default())
        .await
        .expect("Salesforce simulator starts");
    let hl = HigherLogicSim::start(HlSimOptions::default())
        .await
        .expect("Higher Logic simulator starts");
    let sdk = local_sdk_config(&moto().endpoint_url()).await;
    let aws = Clients::new(&sdk);

    let stack = format!("lambdas-{}", uuid::Uuid::new_v4().simple());
    let secret = json!({
        "salesforce": {
            "login_url": sf.base_url(),
            "auth": "client_credentials",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
        "higher_logic": {
            "api_key": setup.hl_api_key.unwrap_or_else(|| hl.api_key().to_string()),
        }
    });
    let provisioned = provision_with_secret(&aws, &stack, Some(&secret.to_string()))
        .await
        .expect("stack provisioned");

    let cfg = Config::from_toml_str(&format!(
        r#"
allow_insecure_http = true
[contacts]
active_field = "Active__c"
[higher_logic]
base_url = "{}"
"#,
        hl.base_url()
    ))
    .expect("test config is valid");
    let (queue_url, dlq_url) = (provisioned.queue_url, provisioned.dlq_url);
    let resources = Resources {
        secret_id: provisioned.secret.expect("the secret was stored"),
        table: provisioned.table,
        queue_url: queue_url.clone(),
        dlq_url: dlq_url.clone(),
    };
    let rt = Runtime::new(cfg, resources, &sdk);
    Deployment {
        sf,
        hl,
        rt,
        queue: SqsQueue::new(aws.sqs.clone(), queue_url),
        dlq: SqsQueue::new(aws.sqs.clone(), dlq_url),
    }
}

pub fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// An active Contact with a security group; returns its 18-character Id.
pub fn insert_contact(sf: &SalesforceSim, last_name: &str) -> String {
    sf.insert(
        "Contact",
        fields(json!({
            "FirstName": "Ada",
            "LastName": last_name,
            "Email": format!("{}@example.org", last_name.to_lowercase()),
            "Active__c": true,
            "HL_Member_Type__c": "Gold",
        })),
    )
}

/// A context as the runtime API gives it: a request id and a deadline a minute away.
pub fn context(request_id: &str) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = request_id.to_string();
    let deadline = SystemTime::now() + Duration::from_mins(1);
    ctx.deadline = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock after 1970");
    ctx
}

/// The invocation's EMF document, parsed; it must be there, on a line of its own.
pub fn emf_document(emf: Option<&str>) -> Value {
    let line = emf.expect("the invocation made an EMF document");
    assert!(!line.contains('\n'), "one document on one line: {line}");
    serde_json::from_str(line).expect("the EMF document is JSON")
}

/// The EMF document's metric values, by name (each invocation sends one value per metric).
pub fn emf_values(emf: Option<&str>) -> Map<String, Value> {
    let doc = emf_document(emf);
    let declared: Vec<String> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("declared metrics")
        .iter()
        .filter_map(|m| m["Name"].as_str().map(str::to_string))
        .collect();
    let mut values = Map::new();
    for name in declared {
        let v = match &doc[&name] {
            Value::Array(samples) if samples.len() == 1 => samples[0].clone(),
            other => other.clone(),
        };
        assert!(
            v.is_number(),
            "metric {name} declared without one value: {doc}"
        );
        values.insert(name, v);
    }
    values
}
