#!/usr/bin/env bash
# Checks infra/: lints the SAM template, synthesizes the CDK app offline, compares the two stacks
# fact by fact, and proves that the comparison notices when either side drifts.
# Installs what it needs (infra/.venv-sam, infra/cdk/node_modules) and can be run again at will.
# Usage: bash infra/check.sh            (from anywhere; needs python3 >= 3.10, node >= 18, npm)
#        bash infra/check.sh --install  (only install the tools, e.g. before `make deploy`)
set -euo pipefail

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$INFRA/.venv-sam"
CDK="$INFRA/cdk"
SAM_TEMPLATE="$INFRA/template.yaml"
CDK_TEMPLATE="$CDK/cdk.out/Hlsync.template.json"

# Everything here is offline: no telemetry, no notices, no credentials, a fixed region.
export SAM_CLI_TELEMETRY=0 CDK_DISABLE_CLI_TELEMETRY=true AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

passed=0
failed=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# step NAME COMMAND...: runs the command, shows its output only when it fails.
step() {
  local name="$1"
  shift
  if "$@" >"$WORK/out" 2>&1; then
    ok "$name"
  else
    fail "$name"
    sed 's/^/     | /' "$WORK/out"
  fi
}

# ------------------------------------------------------------------ tools
if [[ ! -f "$VENV/.installed" ]] || ! cmp -s "$INFRA/requirements.txt" "$VENV/.installed"; then
  echo "installing cfn-lint and aws-sam-cli into $VENV (once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$INFRA/requirements.txt"
  cp "$INFRA/requirements.txt" "$VENV/.installed"
fi
# npm ci rewrites node_modules from the lock file; npm leaves its own copy of the lock there.
if [[ ! -f "$CDK/node_modules/.package-lock.json" || "$CDK/package-lock.json" -nt "$CDK/node_modules/.package-lock.json" ]]; then
  echo "installing the CDK app's packages (npm ci, once)"
  (cd "$CDK" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [[ ${1:-} == --install ]]; then
  exit 0
fi

# ------------------------------------------------------------------ SAM template
step "cfn-lint infra/template.yaml" "$VENV/bin/cfn-lint" -- "$SAM_TEMPLATE"
step "sam validate --lint infra/template.yaml" \
  "$VENV/bin/sam" validate --lint --template-file "$SAM_TEMPLATE" --region us-east-1

# `sam build --beta-features` as `make deploy` runs it, on a copy of the workspace's sources with a
# stand-in cargo-lambda that records its command and writes an empty bootstrap: this checks how SAM
# reads the template's build metadata (CodeUri, rust-cargolambda, Binary, architecture) in seconds,
# without compiling (make package does that) and without touching the real target/.
sam_dry_build() {
  local root="$WORK/sam-build" real_cargo
  real_cargo="$(command -v cargo)" || {
    echo "cargo not found: install Rust (rustup)"
    return 1
  }
  mkdir -p "$root/bin" "$root/infra"
  cp "$INFRA/../Cargo.toml" "$INFRA/../Cargo.lock" "$root/"
  cp -r "$INFRA/../crates" "$root/"
  cp "$SAM_TEMPLATE" "$root/infra/template.yaml"
  cat >"$root/bin/cargo" <<EOF
#!/usr/bin/env bash
if [[ \$1 == metadata ]]; then exec "$real_cargo" "\$@" --offline; fi
if [[ \$1 == lambda && \$2 == build ]]; then
  echo "\${*:2}" >>"$root/calls"
  bin=""
  prev=""
  for arg in "\$@"; do [[ \$prev == --bin ]] && bin="\$arg"; prev="\$arg"; done
  mkdir -p "target/lambda/\$bin" && : >"target/lambda/\$bin/bootstrap"
  exit 0
fi
if [[ \$1 == lambda ]]; then echo "cargo-lambda (stand-in for infra/check.sh)"; exit 0; fi
exec "$real_cargo" "\$@"
EOF
  printf '#!/bin/sh\nexit 0\n' >"$root/bin/cargo-lambda"
  chmod +x "$root/bin/cargo" "$root/bin/cargo-lambda"
  (cd "$root/infra" && PATH="$root/bin:$PATH" "$VENV/bin/sam" build --beta-features) || return 1
  local want fn
  for fn in periodic-refresh member-refresh; do
    want="build --release --arm64 --bin $fn"
    grep -qxF -- "$want" "$root/calls" || {
      echo "sam build did not run 'cargo lambda $want'; it ran:"
      cat "$root/calls"
      return 1
    }
  done
  for fn in PeriodicRefreshFunction MemberRefreshFunction; do
    [[ -f "$root/infra/.aws-sam/build/$fn/bootstrap" ]] || {
      echo "sam build left no bootstrap for $fn"
      return 1
    }
  done
}
step "sam build --beta-features (stand-in cargo-lambda): builds both binaries from the workspace root" sam_dry_build

# `make deploy` hands the TOML config to sam deploy through config-param.sh: it must arrive intact.
cat >"$WORK/hlsync.toml" <<'EOF'
allow_insecure_http = false

[salesforce]
api_version = "62.0"
cursor_field = "SystemModstamp"  # or a custom "HL mod date" field
lookback = "10m"

[contacts]
active_field = "Active__c"
security_group_filter = ["Member", "Staff"]
note = 'a literal string with \backslashes and "quotes"'

[higher_logic]
base_url = "https://datapushapi.example.org/v2"
EOF
config_round_trip() {
  "$VENV/bin/python" - "$(bash "$INFRA/config-param.sh" "$WORK/hlsync.toml")" "$WORK/hlsync.toml" <<'EOF'
import sys
from samcli.cli.types import CfnParameterOverridesType
got = CfnParameterOverridesType().convert((sys.argv[1],), None, None)["HlsyncConfig"]
want = open(sys.argv[2], encoding="utf-8").read().rstrip("\n")
sys.exit(0 if got == want else f"sam deploy would receive {got!r}, not {want!r}")
EOF
}
step "config-param.sh: the TOML config survives sam deploy's parameter parser" config_round_trip

# ------------------------------------------------------------------ CDK app
# synth OUTDIR [-c key=value...]: offline synthesis with a placeholder code asset (see README).
synth() {
  local out="$1"
  shift
  (cd "$CDK" && npx --no-install cdk synth --quiet --no-notices --no-version-reporting \
    --output "$out" -c hlsync:placeholderCode=true "$@")
}
step "tsc --noEmit (CDK app types)" bash -c "cd '$CDK' && npx --no-install tsc --noEmit"
step "cdk synth (offline, placeholder code)" synth "$CDK/cdk.out"
# W3005 is CDK's own habit of a DependsOn next to a GetAtt; harmless.
step "cfn-lint of the synthesized CDK template" "$VENV/bin/cfn-lint" --ignore-checks W3005 -- "$CDK_TEMPLATE"

# ------------------------------------------------------------------ SAM == CDK
echo "comparing the SAM and CDK stacks:"
if "$VENV/bin/python" "$INFRA/compare_stacks.py" "$SAM_TEMPLATE" "$CDK_TEMPLATE" >"$WORK/compare" 2>&1; then
  compare_ok=1
else
  compare_ok=0
fi
# Indented so that only this script's last line reads as the summary.
sed 's/^/  /' "$WORK/compare"
compare_passed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$WORK/compare")
compare_failed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$WORK/compare")
passed=$((passed + ${compare_passed:-0}))
failed=$((failed + ${compare_failed:-0}))
if [[ $compare_ok == 0 && ${compare_failed:-0} == 0 ]]; then
  fail "compare_stacks.py ran to the end"
fi

# The same with every setting changed, through both sides' own mechanisms (SAM parameters, CDK
# context), which also takes the other branch of each condition (existing secret, alarm ARN, ...).
alt_secret=arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/hlsync-AbCdEf
alt_topic=arn:aws:sns:us-east-1:123456789012:operations
alt_settings=(
  "existingSecretArn ExistingSecretArn $alt_secret"
  "alarmActionArn AlarmActionArn $alt_topic"
  "architecture Architecture x86_64"
  "logLevel LogLevel debug"
  "logRetentionDays LogRetentionDays 90"
  "scheduleIntervalMinutes ScheduleIntervalMinutes 60"
  "scheduleState ScheduleState DISABLED"
  "periodicRefreshReservedConcurrency PeriodicRefreshReservedConcurrency 0"
  "memberRefreshBatchSize MemberRefreshBatchSize 10"
  "memberRefreshBatchingWindowSeconds MemberRefreshBatchingWindowSeconds 0"
  "memberRefreshMaxConcurrency MemberRefreshMaxConcurrency 5"
  "queueAgeAlarmSeconds QueueAgeAlarmSeconds 600"
  "allotmentShareAlarmPercent AllotmentShareAlarmPercent 25"
)
alt_context=()
alt_params=()
for setting in "${alt_settings[@]}"; do
  read -r context_key parameter value <<<"$setting"
  alt_context+=(-c "hlsync:$context_key=$value")
  alt_params+=("$parameter=$value")
done
compare_alt() {
  synth "$WORK/cdk-alt.out" "${alt_context[@]}" &&
    "$VENV/bin/python" "$INFRA/compare_stacks.py" "$SAM_TEMPLATE" "$WORK/cdk-alt.out/Hlsync.template.json" "${alt_params[@]}"
}
step "SAM == CDK with every setting changed (${#alt_settings[@]} parameters / context values)" compare_alt

# ------------------------------------------------------------------ the comparison catches drift
# must_differ NAME SAM CDK: the comparison of these two templates must report a failed check
# (exit 1), not pass and not crash (exit 2), or it would also miss real drift.
must_differ() {
  local name="$1" sam="$2" cdk="$3" rc=0
  "$VENV/bin/python" "$INFRA/compare_stacks.py" "$sam" "$cdk" >"$WORK/out" 2>&1 || rc=$?
  if [[ $rc == 1 ]] && grep -q '^FAIL' "$WORK/out"; then
    ok "comparison catches: $name ($(grep -c '^FAIL' "$WORK/out") check(s) failed)"
  else
    fail "comparison catches: $name (exit $rc)"
    sed 's/^/     | /' "$WORK/out"
  fi
}

# sam_mutant NAME SED_EXPR: a copy of the SAM template changed by SED_EXPR, against the real CDK one.
sam_mutant() {
  local name="$1" expr="$2" copy="$WORK/template.yaml"
  sed -e "$expr" "$SAM_TEMPLATE" >"$copy"
  if cmp -s "$copy" "$SAM_TEMPLATE"; then
    fail "comparison catches: $name (the mutation '$expr' changed nothing: update check.sh)"
    return
  fi
  must_differ "SAM $name" "$copy" "$CDK_TEMPLATE"
}

# cdk_mutant NAME PYTHON: a copy of the CDK template changed by PYTHON (acting on `t` and helpers
# `res(type)` / `fn(name)`), against the real SAM one.
cdk_mutant() {
  local name="$1" code="$2" copy="$WORK/cdk.template.json"
  if ! "$VENV/bin/python" - "$CDK_TEMPLATE" "$copy" >"$WORK/out" 2>&1 <<EOF
import json, sys
t = json.load(open(sys.argv[1]))
R = t["Resources"]
def res(kind):
    found = [r for r in R.values() if r["Type"] == kind]
    assert found, "no " + kind
    return found
def fn(name):
    return next(r for r in res("AWS::Lambda::Function") if name in json.dumps(r["Properties"]["FunctionName"]))
$code
json.dump(t, open(sys.argv[2], "w"))
EOF
  then
    fail "comparison catches: CDK $name (the mutation failed: update check.sh)"
    sed 's/^/     | /' "$WORK/out"
    return
  fi
  must_differ "CDK $name" "$SAM_TEMPLATE" "$copy"
}

sam_mutant "maxReceiveCount 5 -> 6" 's/maxReceiveCount: 5/maxReceiveCount: 6/'
sam_mutant "TTL attribute renamed" 's/AttributeName: expires_at/AttributeName: ttl/'
sam_mutant "point-in-time recovery off" 's/PointInTimeRecoveryEnabled: true/PointInTimeRecoveryEnabled: false/'
sam_mutant "no ReportBatchItemFailures" 's/FunctionResponseTypes: \[ReportBatchItemFailures\]/FunctionResponseTypes: []/'
sam_mutant "default concurrency 2 -> 3" '/MemberRefreshMaxConcurrency:$/,/Description/s/Default: 2/Default: 3/'
sam_mutant "schedule input without execution id" 's/,"execution_id":"<aws.scheduler.execution-id>"//'
sam_mutant "RUST_LOG renamed" 's/RUST_LOG: !Ref LogLevel/RUST_LOG_LEVEL: !Ref LogLevel/'
sam_mutant "DLQ alarm threshold 0 -> 5" '/DeadLetterQueueAlarm:/,/ComparisonOperator/s/Threshold: 0/Threshold: 5/'
sam_mutant "a stale environment variable left in both functions" \
  's/^\(        \)RUST_LOG: !Ref LogLevel$/\1RUST_LOG: !Ref LogLevel\n\1HLSYNC_CONCURRENT_FUNCTIONS: "3"/'
sam_mutant "default batch size 500 -> 100" '/MemberRefreshBatchSize:$/,/Description/s/Default: 500/Default: 100/'
sam_mutant "opt-out alarm on 1 datapoint" '/OptOutFailedAlarm:/,/ComparisonOperator/s/DatapointsToAlarm: 2/DatapointsToAlarm: 1/'
sam_mutant "opt-out alarm period off by a minute (the lookup list)" '/MinutesToSeconds:/,/List:/s/,1800,/,1860,/'
sam_mutant "dashboard charts OptOutFailed of the wrong function" \
  's/\["hlsync", "OptOutFailed", "Function", "periodic-refresh"\]/["hlsync", "OptOutFailed", "Function", "member-refresh"]/'
cdk_mutant "a stale environment variable left in member-refresh" \
  'fn("member-refresh")["Properties"]["Environment"]["Variables"]["HLSYNC_CONCURRENT_FUNCTIONS"] = "3"'
cdk_mutant "member-refresh may not UpdateItem the state table (the shared pace)" \
  'p = next(r for r in res("AWS::IAM::Policy") if "MemberRefresh" in json.dumps(r["Properties"]["Roles"]))
st = next(st for st in p["Properties"]["PolicyDocument"]["Statement"] if "dynamodb:UpdateItem" in st["Action"])
st["Action"].remove("dynamodb:UpdateItem")'
cdk_mutant "batch size 500 -> 100" 'res("AWS::Lambda::EventSourceMapping")[0]["Properties"]["BatchSize"] = 100'
cdk_mutant "batching window 5 -> 0" 'res("AWS::Lambda::EventSourceMapping")[0]["Properties"]["MaximumBatchingWindowInSeconds"] = 0'
cdk_mutant "member-refresh on x86_64" 'fn("member-refresh")["Properties"]["Architectures"] = ["x86_64"]'
cdk_mutant "member-refresh timeout 120 -> 300" 'fn("member-refresh")["Properties"]["Timeout"] = 300'
cdk_mutant "DLQ retention 4 days" \
  'next(q for q in res("AWS::SQS::Queue") if "RedrivePolicy" not in q["Properties"])["Properties"]["MessageRetentionPeriod"] = 345600'
cdk_mutant "billing PROVISIONED" 'res("AWS::DynamoDB::Table")[0]["Properties"]["BillingMode"] = "PROVISIONED"'
cdk_mutant "queue-age alarm removed" \
  'del R[next(k for k, r in R.items() if "queue-age" in json.dumps(r["Properties"].get("AlarmName", "")))]'
cdk_mutant "opt-out alarm removed" \
  'del R[next(k for k, r in R.items() if r["Properties"].get("MetricName") == "OptOutFailed")]'
cdk_mutant "opt-out alarm every 5 minutes, not every run" \
  'next(r for r in res("AWS::CloudWatch::Alarm") if r["Properties"].get("MetricName") == "OptOutFailed")["Properties"]["Period"] = 300'
cdk_mutant "dashboard without MeetingsPushed" \
  'd = res("AWS::CloudWatch::Dashboard")[0]["Properties"]; d["DashboardBody"] = json.loads(json.dumps(d["DashboardBody"]).replace("MeetingsPushed", "MeetingPushed"))'
cdk_mutant "schedule every 15 minutes" 'res("AWS::Scheduler::Schedule")[0]["Properties"]["ScheduleExpression"] = "rate(15 minutes)"'
cdk_mutant "periodic-refresh may also read the DLQ" \
  'next(r for r in res("AWS::IAM::Policy") if "PeriodicRefresh" in json.dumps(r))["Properties"]["PolicyDocument"]["Statement"].append({"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": "*"})'
# And once through the CDK app itself: its synthesis with other settings is not the default stack.
must_differ "CDK app synthesized with other settings, against SAM's defaults" \
  "$SAM_TEMPLATE" "$WORK/cdk-alt.out/Hlsync.template.json"

echo "infra: $passed passed, $failed failed"
[[ $failed == 0 ]]
