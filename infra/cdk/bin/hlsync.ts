#!/usr/bin/env node
// The hlsync CDK app: the stack of infra/template.yaml, with the functions built by cargo-lambda-cdk.
// Settings come from cdk.json's context (override with `-c hlsync:NAME=VALUE`); the TOML config is a
// deploy-time parameter, as in the SAM template.
import * as cdk from 'aws-cdk-lib';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { HlsyncStack, HlsyncSettings } from '../lib/hlsync-stack';

const app = new cdk.App();

function text(key: string): string {
  const value = app.node.tryGetContext(`hlsync:${key}`);
  if (value === undefined || value === null) {
    throw new Error(`context hlsync:${key} is missing: restore it in infra/cdk/cdk.json or pass -c hlsync:${key}=VALUE`);
  }
  return String(value);
}

function whole(key: string, min: number, max: number): number {
  const raw = text(key);
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`context hlsync:${key} is ${JSON.stringify(raw)}: give a whole number from ${min} to ${max}`);
  }
  return value;
}

function oneOf<T extends string>(key: string, allowed: readonly T[]): T {
  const value = text(key);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`context hlsync:${key} is ${JSON.stringify(value)}: give one of ${allowed.join(', ')}`);
  }
  return value as T;
}

// With placeholder code the functions' asset is not built (no cargo-lambda or Docker needed), so
// `cdk synth` works offline for checks; never deploy such an assembly.
if (oneOf('placeholderCode', ['true', 'false'] as const) === 'true') {
  app.node.setContext(cxapi.BUNDLING_STACKS, []);
}

const settings: HlsyncSettings = {
  architecture: oneOf('architecture', ['arm64', 'x86_64'] as const),
  existingSecretArn: text('existingSecretArn'),
  logLevel: text('logLevel'),
  logRetentionDays: whole('logRetentionDays', 1, 3653),
  scheduleIntervalMinutes: whole('scheduleIntervalMinutes', 2, 1440),
  scheduleState: oneOf('scheduleState', ['ENABLED', 'DISABLED'] as const),
  periodicRefreshReservedConcurrency: whole('periodicRefreshReservedConcurrency', 0, 1),
  memberRefreshBatchSize: whole('memberRefreshBatchSize', 1, 10000),
  memberRefreshBatchingWindowSeconds: whole('memberRefreshBatchingWindowSeconds', 0, 60),
  memberRefreshMaxConcurrency: whole('memberRefreshMaxConcurrency', 2, 1000),
  alarmActionArn: text('alarmActionArn'),
  alarmEmail: text('alarmEmail'),
  queueAgeAlarmSeconds: whole('queueAgeAlarmSeconds', 60, 1209600),
  allotmentShareAlarmPercent: whole('allotmentShareAlarmPercent', 1, 100),
};

new HlsyncStack(app, 'Hlsync', {
  stackName: text('stackName'),
  description: 'hlsync: keeps a Higher Logic community in step with Salesforce (CDK app, same stack as infra/template.yaml)',
  settings,
});
