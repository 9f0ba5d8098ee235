//! `hlsync-sim`: the Salesforce and Higher Logic simulators as one local process, for the demo
//! and for trying hlsync by hand. Prints where they listen and the credentials to use (simulator
//! values, not secrets), then serves until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use hlsync_sim::higher_logic::{HigherLogicSim, HlFaults, HlSimOptions};
use hlsync_sim::salesforce::{self, SalesforceSim, SimOptions};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "hlsync-sim",
    version,
    about = "Run the Salesforce and Higher Logic simulators locally"
)]
struct Args {
    /// Port of the Salesforce simulator on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    sf_port: u16,
    /// Port of the Higher Logic simulator on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    hl_port: u16,
    /// Contacts in the generated Salesforce org.
    #[arg(long, default_value_t = 2000)]
    contacts: usize,
    /// Seed of the generated data and of injected faults: the same seed gives the same org.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Calls a minute the Higher Logic simulator accepts before answering 429 (0: unlimited).
    #[arg(long, default_value_t = hlsync_sim::higher_logic::DEFAULT_MAX_CALLS_PER_MINUTE)]
    hl_max_calls_per_minute: u32,
    /// Probability (0 to 1) that a Higher Logic call answers 500 or 503.
    #[arg(long, default_value_t = 0.0)]
    hl_error_rate: f64,
    /// Print the endpoints and credentials as one JSON object (for scripts).
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let sf = SalesforceSim::start(SimOptions {
        port: args.sf_port,
        seed: args.seed,
        ..SimOptions::default()
    })
    .await
    .context("starting the Salesforce simulator")?;
    sf.load(&salesforce::seed::generate(args.contacts, args.seed));

    let hl = HigherLogicSim::start(HlSimOptions {
        port: args.hl_port,
        max_calls_per_minute: args.hl_max_calls_per_minute,
        faults: HlFaults {
            seed: args.seed,
            error_rate: args.hl_error_rate,
            ..HlFaults::default()
        },
        ..HlSimOptions::default()
    })
    .await
    .context("starting the Higher Logic simulator")?;

    // The secret hlsync reads (SPEC.md §4), filled in for these simulators.
    let secret = json!({
        "salesforce": {
            "login_url": sf.base_url(),
            "auth": "client_credentials",
            "client_id": salesforce::DEFAULT_CLIENT_ID,
            "client_secret": salesforce::DEFAULT_CLIENT_SECRET,
            "username": salesforce::DEFAULT_USERNAME,
            "password": salesforce::DEFAULT_PASSWORD,
            "security_token": salesforce::DEFAULT_SECURITY_TOKEN,
        },
        "higher_logic": {
            "api_key": hl.api_key(),
        }
    });

    if args.json {
        let summary = json!({
            "salesforce_url": sf.base_url(),
            "higher_logic_url": hl.base_url(),
            "higher_logic_email_preferences_url": hl.email_preferences_url(),
            "contacts": args.contacts,
            "seed": args.seed,
            "secret": secret,
        });
        println!("{summary}");
    } else {
        let secret_text = serde_json::to_string_pretty(&secret).context("formatting the secret")?;
        println!(
            "Salesforce simulator:   {sf_url}  (login URL and instance URL; {contacts} contacts, seed {seed})\n\
             Higher Logic simulator: {hl_url}  (Push API v2; email-preference feed {prefs_url})\n\
             \n\
             Config (TOML):\n\
             allow_insecure_http = true\n\
             [higher_logic]\n\
             base_url = \"{hl_url}\"\n\
             email_preferences_url = \"{prefs_url}\"\n\
             \n\
             Secret (JSON; simulator values, not secrets; save as a file for `hlsync provision --secret-file`):\n\
             {secret_text}\n\
             \n\
             Serving until Ctrl-C.",
            sf_url = sf.base_url(),
            hl_url = hl.base_url(),
            prefs_url = hl.email_preferences_url(),
            contacts = args.contacts,
            seed = args.seed,
        );
    }

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    hl.shutdown().await;
    sf.shutdown().await;
    Ok(())
}
