#!/usr/bin/env python3
"""Checks that the SAM template and the synthesized CDK template describe the same hlsync stack.

Usage: compare_stacks.py SAM_TEMPLATE CDK_TEMPLATE [SAM_PARAMETER=VALUE...]

The SAM template is first expanded to plain CloudFormation with the SAM translator (offline, the
same library `sam validate` uses), so both sides are compared as CloudFormation. Logical ids differ
between the two tools, so every resource is given a role (table, queue, dlq, periodic-refresh, ...)
and intrinsic functions are resolved against parameter defaults with references written as roles.
Each check extracts one fact from both templates; it passes when the facts are equal and the fact
also meets SPEC.md (so both sides cannot drift away together). With SAM_PARAMETER=VALUE overrides
(for a CDK app synthesized with the matching context) only equality is checked, since SPEC.md's
defaults no longer apply. Prints one line per check and
`N passed, M failed`; exits 1 on any failure, 2 when a template cannot be read.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from typing import Any, Callable

STACK = "STACK"
PSEUDO = {
    "AWS::StackName": STACK,
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()
FUNCTIONS = ("periodic-refresh", "member-refresh")
# The environment of both functions, whatever the settings. Higher Logic's rate limit needs none:
# every function and CLI run paces its calls by one shared pace in the state table.
ENV_NAMES = [
    "HLSYNC_CONFIG",
    "HLSYNC_DLQ_URL",
    "HLSYNC_QUEUE_URL",
    "HLSYNC_SECRET_ID",
    "HLSYNC_STATE_TABLE",
    "RUST_LOG",
]
# Every metric the functions send (crates/lambdas/src/metrics.rs) and the functions whose
# dashboard lines must show it.
HLSYNC_METRICS = {
    "ContactsChanged": ("periodic-refresh",),
    "MembersPushed": ("member-refresh",),
    "MembersSkipped": ("member-refresh",),
    "MembersDeactivated": ("member-refresh",),
    "MessagesFailed": ("member-refresh",),
    "MeetingsPushed": ("member-refresh",),
    "RegistrationsPushed": ("member-refresh",),
    "FullRefreshQueued": ("periodic-refresh",),
    "OptOutChanges": ("periodic-refresh",),
    "OptOutWritten": ("periodic-refresh",),
    "OptOutFailed": ("periodic-refresh",),
    "SalesforceApiCalls": FUNCTIONS,
    "AllotmentShare": FUNCTIONS,
    "HigherLogicCalls": FUNCTIONS,
    "RunDurationMs": FUNCTIONS,
}


class TemplateError(Exception):
    """A template is missing something the comparison relies on."""


def load_sam(path: str) -> tuple[dict, dict]:
    """Returns (the SAM template as written, the same expanded to CloudFormation)."""
    # Imported here so that a missing venv gives the install hint below, not a traceback.
    try:
        from samtranslator.translator.transform import transform
        from samtranslator.yaml_helper import yaml_parse
    except ImportError as err:
        raise TemplateError(
            f"{err}: run infra/check.sh, which installs aws-sam-cli into infra/.venv-sam"
        ) from err

    with open(path, encoding="utf-8") as f:
        raw = yaml_parse(f.read())
    expanded = copy.deepcopy(raw)
    # The translator wants S3 code; the local CodeUri is checked on the raw template instead.
    for res in expanded.get("Resources", {}).values():
        if res.get("Type") == "AWS::Serverless::Function":
            res.setdefault("Properties", {})["CodeUri"] = "s3://placeholder/code.zip"
    expanded.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])

    class NoManagedPolicies:
        """The translator only asks for managed policies named in Policies; this stack names none."""

        def load(self) -> dict:
            return {}

    return raw, transform(expanded, {}, NoManagedPolicies())


class Stack:
    """One CloudFormation template with its conditions evaluated and resources named by role."""

    def __init__(self, label: str, template: dict):
        self.label = label
        self.template = template
        self.params = {
            name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()
        }
        self.condition_defs = template.get("Conditions", {})
        self._conditions: dict[str, bool] = {}
        self.resources = {
            lid: res
            for lid, res in template.get("Resources", {}).items()
            if "Condition" not in res or self.condition(res["Condition"])
        }
        self.roles: dict[str, str] = {}
        self._assign_roles()

    # ------------------------------------------------------------------ roles
    def _assign_roles(self) -> None:
        for lid, res in self.resources.items():
            kind, props = res["Type"], res.get("Properties", {})
            if kind == "AWS::DynamoDB::Table":
                self._name(lid, "table")
            elif kind == "AWS::SQS::Queue":
                self._name(lid, "queue" if "RedrivePolicy" in props else "dlq")
            elif kind == "AWS::SecretsManager::Secret":
                self._name(lid, "secret")
            elif kind == "AWS::SNS::Topic":
                self._name(lid, "topic")
            elif kind == "AWS::Lambda::Function":
                name = self.resolve(props.get("FunctionName", ""))
                role = next((f for f in FUNCTIONS if str(name).endswith(f)), None)
                if role is None:
                    raise TemplateError(f"{self.label}: function {lid} has no hlsync FunctionName")
                self._name(lid, role)
            elif kind == "AWS::Logs::LogGroup":
                name = str(self.resolve(props.get("LogGroupName", lid)))
                self._name(lid, "loggroup:" + name.rsplit("/", 1)[-1].replace(STACK + "-", ""))
            elif kind == "AWS::Scheduler::Schedule":
                self._name(lid, "schedule")
            elif kind == "AWS::CloudWatch::Dashboard":
                self._name(lid, "dashboard")
            elif kind == "AWS::IAM::ManagedPolicy":
                self._name(lid, "operator-policy")
        # Roles are named after who assumes them, which needs the functions' roles first.
        for lid, res in self.resources.items():
            if res["Type"] == "AWS::Lambda::Function":
                role_lid = self._lid_of(res["Properties"].get("Role"))
                if role_lid:
                    self._name(role_lid, "role:" + self.roles[lid])
            if res["Type"] == "AWS::Scheduler::Schedule":
                role_lid = self._lid_of(res["Properties"].get("Target", {}).get("RoleArn"))
                if role_lid:
                    self._name(role_lid, "role:schedule")

    def _name(self, lid: str, role: str) -> None:
        if role in self.roles.values():
            raise TemplateError(f"{self.label}: two resources play the role {role}")
        self.roles[lid] = role

    @staticmethod
    def _lid_of(value: Any) -> str | None:
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".")[0]
        if isinstance(value, dict) and "Ref" in value:
            return value["Ref"]
        return None

    def by_role(self, role: str) -> dict:
        for lid, r in self.roles.items():
            if r == role:
                return self.resources[lid]
        raise TemplateError(f"{self.label}: no resource plays the role {role}")

    def of_type(self, kind: str) -> list[dict]:
        return [r for r in self.resources.values() if r["Type"] == kind]

    def props(self, role: str) -> dict:
        return self.resolve(self.by_role(role).get("Properties", {}))

    # ------------------------------------------------------------------ intrinsics
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self._truth(self.condition_defs[name])
        return self._conditions[name]

    def _truth(self, expr: Any) -> bool:
        if isinstance(expr, dict):
            (fn, arg), = expr.items()
            if fn == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self._truth(arg[0])
            if fn == "Fn::And":
                return all(self._truth(x) for x in arg)
            if fn == "Fn::Or":
                return any(self._truth(x) for x in arg)
            if fn == "Condition":
                return self.condition(arg)
        raise TemplateError(f"{self.label}: cannot evaluate condition {expr!r}")

    def _ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            value = self.params[name]
            return "{param:%s}" % name if value is None else value
        return "{ref:%s}" % self.roles.get(name, name)

    def _getatt(self, lid: str, attr: str) -> str:
        return "{%s.%s}" % (self.roles.get(lid, lid), attr)

    def _sub(self, text: str, variables: dict) -> str:
        def one(m: re.Match) -> str:
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in variables:
                return str(self.resolve(variables[key]))
            if "." in key and key.split(".")[0] in self.template.get("Resources", {}):
                lid, attr = key.split(".", 1)
                return self._getatt(lid, attr)
            return str(self._ref(key))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self._ref(arg)
            if fn == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._getatt(lid, attr)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self._sub(text, variables)
            if fn == "Fn::Join":
                sep, parts = arg
                return sep.join(str(p) for p in self.resolve(parts))
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if fn == "Fn::FindInMap":
                name, top, second = (str(self.resolve(x)) for x in arg)
                return self.template["Mappings"][name][top][second]
            if fn == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
        out = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out


# ---------------------------------------------------------------------- normalising facts
def scalar(v: Any) -> Any:
    """CloudFormation treats 5, "5" and 5.0 alike; so does the comparison."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return [scalar(x) for x in v]
    if isinstance(v, dict):
        return {k: scalar(x) for k, x in sorted(v.items())}
    return v


def arn(value: Any) -> Any:
    """The ARN of a stack resource in one spelling, whichever way the template built it."""
    if isinstance(value, list):
        return sorted(arn(v) for v in value)
    s = str(value)
    m = re.fullmatch(r"\{([\w:-]+)\.Arn\}(.*)", s)
    if m:
        return f"arn({m.group(1)}){m.group(2)}"
    m = re.fullmatch(r"arn:aws:dynamodb:[\w-]+:\d+:table/\{ref:(\w+)\}(.*)", s)
    if m:
        return f"arn({m.group(1)}){m.group(2)}"
    m = re.fullmatch(r"arn:aws:sqs:[\w-]+:\d+:\{([\w-]+)\.QueueName\}", s)
    if m:
        return f"arn({m.group(1)})"
    m = re.fullmatch(r"\{ref:(secret|topic|operator-policy)\}", s)
    if m:
        return f"arn({m.group(1)})"
    return s


def permissions(policy_docs: list[dict]) -> dict[str, list[str]]:
    """Allowed actions per resource, from a set of policy documents."""
    grants: dict[str, set[str]] = {}
    for doc in policy_docs:
        for st in doc.get("Statement", []):
            if st.get("Effect") != "Allow":
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for r in resources:
                grants.setdefault(arn(r), set()).update(actions)
    return {r: sorted(a) for r, a in sorted(grants.items())}


def role_permissions(stack: Stack, role: str) -> dict:
    """Everything a function (or the scheduler) may do: the role's inline policies, managed
    policy ARNs, and any AWS::IAM::Policy attached to the role (CDK's DefaultPolicy)."""
    lid = next(l for l, r in stack.roles.items() if r == role)
    props = stack.resolve(stack.resources[lid]["Properties"])
    docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
    for res in stack.of_type("AWS::IAM::Policy"):
        p = stack.resolve(res["Properties"])
        if "{ref:%s}" % role in p.get("Roles", []):
            docs.append(p["PolicyDocument"])
    return {
        "managed": sorted(
            re.sub(r"^arn:aws:iam::aws:policy/", "", str(m)) for m in props.get("ManagedPolicyArns", [])
        ),
        "allow": permissions(docs),
    }


# ---------------------------------------------------------------------- the checks
Fact = Callable[[Stack], Any]
Rule = Callable[[Any], str | None]


class Missing:
    """A fact that could not be read from one template, and why."""

    def __init__(self, err: Exception, label: str):
        self.why = f"{type(err).__name__}: {str(err).replace(label + ': ', '')}"

    def __str__(self) -> str:
        return self.why


class Checker:
    def __init__(self, sam: Stack, cdk: Stack, spec_rules: bool):
        self.sam, self.cdk = sam, cdk
        # Off when the stacks were built with other settings than the defaults the rules expect.
        self.spec_rules = spec_rules
        self.passed = self.failed = 0

    @staticmethod
    def _read(fact: Fact, stack: Stack) -> Any:
        try:
            return scalar(fact(stack))
        except (TemplateError, KeyError, IndexError, StopIteration, TypeError, ValueError) as err:
            return Missing(err, stack.label)

    def check(self, name: str, fact: Fact, rule: Rule | None = None, invariant: Rule | None = None) -> None:
        """`rule` is SPEC.md's wish for the default settings; `invariant` must hold with any settings."""
        problems = []
        a, b = self._read(fact, self.sam), self._read(fact, self.cdk)
        if isinstance(a, Missing) or isinstance(b, Missing):
            # With settings that choose existing resources (secret, alarm topic), neither side
            # creates them, and that is a match; with the defaults, every fact must be there.
            both_absent = isinstance(a, Missing) and isinstance(b, Missing) and a.why == b.why
            if self.spec_rules or not both_absent:
                problems.append(f"cannot read the fact: SAM: {a}, CDK: {b}")
        elif a != b:
            problems.append(f"SAM has {json.dumps(a)} but CDK has {json.dumps(b)}")
        else:
            for r in (invariant, rule if self.spec_rules else None):
                why = r(a) if r is not None else None
                if why:
                    problems.append(f"both templates: {why} (got {json.dumps(a)})")
        if problems:
            self.failed += 1
            print(f"FAIL {name}: {'; '.join(problems)}")
        else:
            self.passed += 1
            print(f"ok   {name}")


def expect(wanted: Any) -> Rule:
    def rule(got: Any) -> str | None:
        return None if got == scalar(wanted) else f"SPEC.md wants {json.dumps(scalar(wanted))}"

    return rule


def function_facts(s: Stack, fn: str) -> dict:
    p = s.props(fn)
    return {
        "Runtime": p.get("Runtime"),
        "Architectures": p.get("Architectures"),
        "Handler": p.get("Handler"),
        "MemorySize": p.get("MemorySize"),
        "Timeout": p.get("Timeout"),
        "ReservedConcurrentExecutions": p.get("ReservedConcurrentExecutions"),
        "FunctionName": p.get("FunctionName"),
    }


def event_source(s: Stack) -> dict:
    (esm,) = s.of_type("AWS::Lambda::EventSourceMapping")
    p = s.resolve(esm["Properties"])
    return {
        "source": arn(p["EventSourceArn"]),
        "function": p["FunctionName"],
        "BatchSize": p.get("BatchSize"),
        "MaximumBatchingWindowInSeconds": p.get("MaximumBatchingWindowInSeconds"),
        "FunctionResponseTypes": p.get("FunctionResponseTypes"),
        "ScalingConfig": p.get("ScalingConfig"),
        "Enabled": p.get("Enabled", True),
    }


def schedule(s: Stack) -> dict:
    p = s.props("schedule")
    target = p["Target"]
    return {
        "Name": p.get("Name"),
        "ScheduleExpression": p["ScheduleExpression"],
        "State": p.get("State", "ENABLED"),
        "FlexibleTimeWindow": p["FlexibleTimeWindow"],
        "target": arn(target["Arn"]),
        "Input": json.loads(target["Input"]),
        "RetryPolicy": target.get("RetryPolicy"),
    }


def async_retries(s: Stack, fn: str) -> Any:
    for res in s.of_type("AWS::Lambda::EventInvokeConfig"):
        p = s.resolve(res["Properties"])
        if p["FunctionName"] == "{ref:%s}" % fn:
            return {"MaximumRetryAttempts": p.get("MaximumRetryAttempts"), "Qualifier": p.get("Qualifier")}
    return None


def alarms(s: Stack) -> dict:
    out = {}
    for res in s.of_type("AWS::CloudWatch::Alarm"):
        p = s.resolve(res["Properties"])
        name = str(p.get("AlarmName", "")).replace(STACK + "-", "", 1)
        out[name] = {
            k: p.get(k)
            for k in (
                "Namespace",
                "MetricName",
                "Statistic",
                "Period",
                "EvaluationPeriods",
                "DatapointsToAlarm",
                "Threshold",
                "ComparisonOperator",
                "TreatMissingData",
                "AlarmActions",
                "OKActions",
            )
        } | {"Dimensions": sorted((d["Name"], d["Value"]) for d in p.get("Dimensions", []))}
    return out


def dashboard_metrics(s: Stack) -> list:
    body = json.loads(s.props("dashboard")["DashboardBody"])
    seen = set()
    for widget in body.get("widgets", []):
        for row in widget.get("properties", {}).get("metrics", []):
            # A row is [namespace, metric, dim, value, ...] or ["...", metric, ...] repeating the
            # row above; options come last as a dict.
            names = [x for x in row if not isinstance(x, dict)]
            if len(names) >= 2 and names[0] != "...":
                seen.add((names[0], names[1]) + tuple(names[2:]))
    return sorted(seen)


def run(sam_path: str, cdk_path: str, overrides: dict[str, str]) -> int:
    try:
        raw_sam, sam_cfn = load_sam(sam_path)
        with open(cdk_path, encoding="utf-8") as f:
            cdk_cfn = json.load(f)
        unknown = set(overrides) - set(sam_cfn.get("Parameters", {}))
        if unknown:
            raise TemplateError(f"the SAM template has no parameter {', '.join(sorted(unknown))}")
        for name, value in overrides.items():
            sam_cfn["Parameters"][name]["Default"] = value
        sam, cdk = Stack("SAM", sam_cfn), Stack("CDK", cdk_cfn)
    except (OSError, ValueError, TemplateError) as err:
        print(f"FAIL reading the templates: {err}")
        print("0 passed, 1 failed")
        return 2
    except Exception as err:  # the SAM translator raises its own exception types
        print(f"FAIL SAM translation of {sam_path}: {err}")
        print("0 passed, 1 failed")
        return 2

    c = Checker(sam, cdk, spec_rules=not overrides)

    # --- state table
    c.check(
        "table: key schema pk (S, HASH)",
        lambda s: {
            "keys": s.props("table")["KeySchema"],
            "attrs": s.props("table")["AttributeDefinitions"],
        },
        expect(
            {
                "keys": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "attrs": [{"AttributeName": "pk", "AttributeType": "S"}],
            }
        ),
    )
    c.check("table: billing PAY_PER_REQUEST", lambda s: s.props("table").get("BillingMode"), expect("PAY_PER_REQUEST"))
    c.check(
        "table: TTL on expires_at",
        lambda s: s.props("table").get("TimeToLiveSpecification"),
        expect({"AttributeName": "expires_at", "Enabled": True}),
    )
    c.check(
        "table: point-in-time recovery",
        lambda s: s.props("table")["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        expect(True),
    )
    c.check(
        "table: name STACK-state, retained on delete",
        lambda s: [
            s.props("table").get("TableName"),
            s.by_role("table").get("DeletionPolicy"),
            s.by_role("table").get("UpdateReplacePolicy"),
        ],
        expect([f"{STACK}-state", "Retain", "Retain"]),
    )

    # --- queues
    c.check(
        "queue: redrive to the DLQ after 5 receives",
        lambda s: {
            "target": arn(s.props("queue")["RedrivePolicy"]["deadLetterTargetArn"]),
            "maxReceiveCount": s.props("queue")["RedrivePolicy"]["maxReceiveCount"],
        },
        expect({"target": "arn(dlq)", "maxReceiveCount": 5}),
    )
    c.check("dlq: retention 14 days", lambda s: s.props("dlq").get("MessageRetentionPeriod"), expect(1209600))
    c.check(
        "queues: names as `hlsync provision` gives them",
        lambda s: [s.props("queue").get("QueueName"), s.props("dlq").get("QueueName")],
        expect([f"{STACK}-member-refresh", f"{STACK}-member-refresh-dlq"]),
    )
    c.check(
        "queues: server-side encryption",
        lambda s: [
            s.props(q).get("SqsManagedSseEnabled", "KmsMasterKeyId" in s.props(q)) for q in ("queue", "dlq")
        ],
        expect([True, True]),
    )
    c.check(
        "dlq: redrive allowed only from the queue",
        lambda s: s.props("dlq").get("RedriveAllowPolicy"),
        expect(
            {
                "redrivePermission": "byQueue",
                "sourceQueueArns": [f"arn:aws:sqs:us-east-1:123456789012:{STACK}-member-refresh"],
            }
        ),
    )

    def visibility(s: Stack) -> dict:
        return {
            "VisibilityTimeout": s.props("queue")["VisibilityTimeout"],
            "member-refresh Timeout": s.props("member-refresh")["Timeout"],
            "MaximumBatchingWindowInSeconds": event_source(s)["MaximumBatchingWindowInSeconds"],
        }

    def six_times(v: dict) -> str | None:
        vis, timeout = int(v["VisibilityTimeout"]), int(v["member-refresh Timeout"])
        window = int(v["MaximumBatchingWindowInSeconds"] or 0)
        if vis < 6 * timeout + window:
            return f"visibility timeout {vis} s < 6 x {timeout} s + {window} s batching window"
        return None

    c.check(
        "queue: visibility timeout >= 6 x member-refresh timeout (120 s) + batching window",
        visibility,
        lambda v: None if v["member-refresh Timeout"] == "120" else "wants a member-refresh timeout of 120 s",
        invariant=six_times,
    )

    # --- event source mapping
    c.check(
        "member-refresh: SQS event source",
        event_source,
        lambda v: None
        if v["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        and v["ScalingConfig"].get("MaximumConcurrency") == "2"
        and v["source"] == "arn(queue)"
        and v["function"] == "{ref:member-refresh}"
        else "wants the queue, member-refresh, ReportBatchItemFailures and MaximumConcurrency 2",
    )

    def batch_fits(v: dict) -> str | None:
        size, window = int(v["BatchSize"]), int(v["MaximumBatchingWindowInSeconds"] or 0)
        if size > 2000:
            return f"batch of {size} > 2,000 Contacts: more than two Salesforce calls a batch, and more pushes than a 120 s invocation makes at the default pace"
        if size > 10 and window < 1:
            return f"batch of {size} > 10 needs a batching window of 1 s or more"
        return None

    c.check(
        "member-refresh: batches of 500 gathered for 5 s (one Salesforce call a batch)",
        lambda s: {k: event_source(s)[k] for k in ("BatchSize", "MaximumBatchingWindowInSeconds")},
        expect({"BatchSize": 500, "MaximumBatchingWindowInSeconds": 5}),
        invariant=batch_fits,
    )

    # --- schedule
    c.check(
        "periodic-refresh: EventBridge schedule",
        schedule,
        lambda v: None
        if v["ScheduleExpression"] == "rate(30 minutes)"
        and v["target"] == "arn(periodic-refresh)"
        and v["Input"]
        == {"scheduled_time": "<aws.scheduler.scheduled-time>", "execution_id": "<aws.scheduler.execution-id>"}
        else "wants rate(30 minutes) on periodic-refresh with the scheduled time and execution id",
    )
    c.check(
        "schedule role: may invoke periodic-refresh only",
        lambda s: role_permissions(s, "role:schedule")["allow"],
        expect({"arn(periodic-refresh)": ["lambda:InvokeFunction"]}),
    )

    # --- functions
    for fn in FUNCTIONS:
        c.check(
            f"{fn}: runtime, architecture, handler, memory, timeout",
            lambda s, fn=fn: function_facts(s, fn),
            lambda v, fn=fn: None
            if v["Runtime"] == "provided.al2023"
            and v["Architectures"] == ["arm64"]
            and v["Handler"] == "bootstrap"
            and v["FunctionName"] == f"{STACK}-{fn}"
            else "wants provided.al2023, arm64, bootstrap, STACK-" + fn,
        )
        c.check(
            f"{fn}: environment variable names",
            lambda s, fn=fn: sorted(s.props(fn)["Environment"]["Variables"]),
            invariant=expect(ENV_NAMES),
        )
        c.check(
            f"{fn}: environment variable values",
            lambda s, fn=fn: s.props(fn)["Environment"]["Variables"],
            expect(
                {
                    "HLSYNC_CONFIG": "{param:HlsyncConfig}",
                    "HLSYNC_SECRET_ID": "{ref:secret}",
                    "HLSYNC_STATE_TABLE": "{ref:table}",
                    "HLSYNC_QUEUE_URL": "{ref:queue}",
                    "HLSYNC_DLQ_URL": "{ref:dlq}",
                    "RUST_LOG": "info",
                }
            ),
        )
        c.check(
            f"{fn}: JSON logs to a log group with 30 days retention",
            lambda s, fn=fn: {
                "LoggingConfig": s.props(fn).get("LoggingConfig"),
                "group": s.props("loggroup:" + fn).get("LogGroupName"),
                "retention": s.props("loggroup:" + fn).get("RetentionInDays"),
            },
            expect(
                {
                    "LoggingConfig": {"LogFormat": "JSON", "LogGroup": "{ref:loggroup:%s}" % fn},
                    "group": f"/aws/lambda/{STACK}-{fn}",
                    "retention": 30,
                }
            ),
        )
        c.check(f"{fn}: IAM permissions", lambda s, fn=fn: role_permissions(s, "role:" + fn))
    def pace_grants(s: Stack) -> dict:
        return {
            fn: "dynamodb:UpdateItem" in role_permissions(s, "role:" + fn)["allow"].get("arn(table)", [])
            for fn in FUNCTIONS
        }

    c.check(
        "both functions may UpdateItem the state table (the shared Higher Logic pace)",
        pace_grants,
        invariant=expect({fn: True for fn in FUNCTIONS}),
    )
    c.check(
        "periodic-refresh: one at a time, no async retries",
        lambda s: [
            s.props("periodic-refresh").get("ReservedConcurrentExecutions"),
            async_retries(s, "periodic-refresh"),
        ],
        expect([1, {"MaximumRetryAttempts": 0, "Qualifier": "$LATEST"}]),
    )
    def sqs_grants(s: Stack, fn: str) -> dict:
        allow = role_permissions(s, "role:" + fn)["allow"]
        return {r: acts for r, acts in allow.items() if any(a.startswith("sqs:") for a in acts)}

    c.check(
        "periodic-refresh: only sends to the queue",
        lambda s: sqs_grants(s, "periodic-refresh"),
        expect({"arn(queue)": ["sqs:SendMessage*"]}),
    )
    c.check(
        "member-refresh: polls the queue, dead-letters to the DLQ",
        lambda s: sqs_grants(s, "member-refresh"),
        expect(
            {
                "arn(queue)": [
                    "sqs:ChangeMessageVisibility",
                    "sqs:ChangeMessageVisibilityBatch",
                    "sqs:DeleteMessage",
                    "sqs:DeleteMessageBatch",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                ],
                "arn(dlq)": ["sqs:SendMessage*"],
            }
        ),
    )

    # --- secret
    c.check(
        "secret: STACK/credentials with placeholder JSON of the SPEC shape",
        lambda s: {
            "Name": s.props("secret").get("Name"),
            "keys": sorted(json.loads(s.props("secret")["SecretString"])),
        },
        expect({"Name": f"{STACK}/credentials", "keys": ["higher_logic", "salesforce"]}),
    )

    # --- operators, alarms, dashboard, outputs
    c.check(
        "operator policy: redrive and status",
        lambda s: permissions([s.props("operator-policy")["PolicyDocument"]]),
        lambda v: None
        if "sqs:StartMessageMoveTask" in v.get("arn(dlq)", []) and "sqs:SendMessage" in v.get("arn(queue)", [])
        else "wants StartMessageMoveTask on the DLQ and SendMessage on the queue",
    )
    c.check(
        "alarms: the same set",
        lambda s: sorted(alarms(s)),
        expect(
            sorted(
                [
                    "dlq-not-empty",
                    "queue-age",
                    "periodic-refresh-errors",
                    "member-refresh-errors",
                    "periodic-refresh-allotment",
                    "member-refresh-allotment",
                    "opt-out-failed",
                ]
            )
        ),
    )
    for name in sorted(alarms(sam)):
        c.check(f"alarm {name}: metric, threshold, actions", lambda s, name=name: alarms(s).get(name))

    def opt_out_alarm(s: Stack) -> dict:
        a = alarms(s)["opt-out-failed"]
        every = re.fullmatch(r"rate\((\d+) minutes?\)", str(schedule(s)["ScheduleExpression"]))
        return {
            k: a[k]
            for k in ("Namespace", "MetricName", "Statistic", "Threshold", "ComparisonOperator")
        } | {
            "Dimensions": [list(d) for d in a["Dimensions"]],
            "datapoints of runs in a row": [a["DatapointsToAlarm"], a["EvaluationPeriods"]],
            "Period is one scheduled run": int(a["Period"]) == int(every.group(1)) * 60 if every else None,
        }

    c.check(
        "alarm opt-out-failed: OptOutFailed > 0 in 2 runs in a row",
        opt_out_alarm,
        invariant=expect(
            {
                "Namespace": "hlsync",
                "MetricName": "OptOutFailed",
                "Dimensions": [["Function", "periodic-refresh"]],
                "Statistic": "Sum",
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "datapoints of runs in a row": [2, 2],
                "Period is one scheduled run": True,
            }
        ),
    )
    c.check(
        "alarms: notify the alarm topic",
        lambda s: sorted({str(a) for v in alarms(s).values() for a in v["AlarmActions"] + v["OKActions"]}),
        expect(["{ref:topic}"]),
    )
    c.check(
        "dashboard: the same metrics",
        dashboard_metrics,
        lambda v: None
        if {("hlsync", m, "Function", fn) for m, fns in HLSYNC_METRICS.items() for fn in fns}
        <= {tuple(m) for m in v if m[0] == "hlsync"}
        and {"Errors", "Duration"} <= {m[1] for m in v if m[0] == "AWS/Lambda"}
        and {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}
        <= {m[1] for m in v if m[0] == "AWS/SQS"}
        else "wants every hlsync metric of each function that sends it, queue depth and age, function errors and duration",
    )
    c.check(
        "outputs: the same names",
        lambda s: sorted(k for k in s.template.get("Outputs", {}) if not k.startswith("Bootstrap")),
        lambda v: None
        if {
            "StateTableName",
            "QueueUrl",
            "DeadLetterQueueUrl",
            "SecretArn",
            "PeriodicRefreshFunctionName",
            "MemberRefreshFunctionName",
        }
        <= set(v)
        else "wants the table name, queue URLs, secret ARN and function names",
    )

    # --- what only `sam build` reads
    for fn in FUNCTIONS:
        c.check(
            f"{fn}: SAM builds it with cargo-lambda from the repository root",
            lambda s, fn=fn: _sam_build(raw_sam, fn),
            expect({"BuildMethod": "rust-cargolambda", "Binary": fn, "CodeUri": "../"}),
        )

    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


def _sam_build(raw: dict, fn: str) -> dict:
    """Facts of the SAM template as written (the CDK side has them in RustFunction's bundling)."""
    for res in raw["Resources"].values():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        if res.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == fn:
            code = res["Properties"].get("CodeUri", raw.get("Globals", {}).get("Function", {}).get("CodeUri"))
            return {"BuildMethod": res["Metadata"].get("BuildMethod"), "Binary": fn, "CodeUri": code}
    return {}


def main(argv: list[str]) -> int:
    paths, overrides = [], {}
    for arg in argv:
        if "=" in arg:
            name, value = arg.split("=", 1)
            overrides[name] = value
        else:
            paths.append(arg)
    if len(paths) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    return run(paths[0], paths[1], overrides)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
