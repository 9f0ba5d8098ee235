// The hlsync stack in CDK. It must stay equivalent to infra/template.yaml: infra/compare_stacks.py
// checks the facts that matter (see infra/README.md), so change both together.
import * as path from 'path';
import { Aws, CfnOutput, CfnParameter, CfnResource, Duration, RemovalPolicy, SecretValue, Stack, StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';

/** Synth-time settings; each mirrors a parameter of the SAM template (see cdk.json). */
export interface HlsyncSettings {
  readonly architecture: 'arm64' | 'x86_64';
  /** Empty: the stack creates STACK/credentials with placeholder JSON. */
  readonly existingSecretArn: string;
  readonly logLevel: string;
  readonly logRetentionDays: number;
  readonly scheduleIntervalMinutes: number;
  readonly scheduleState: 'ENABLED' | 'DISABLED';
  /** 1 keeps Periodic Refresh runs from overlapping; 0 for accounts too small to reserve any. */
  readonly periodicRefreshReservedConcurrency: number;
  readonly memberRefreshBatchSize: number;
  readonly memberRefreshBatchingWindowSeconds: number;
  readonly memberRefreshMaxConcurrency: number;
  /** Empty: the stack creates an SNS topic for the alarms. */
  readonly alarmActionArn: string;
  /** Subscribed to the created topic when set. */
  readonly alarmEmail: string;
  readonly queueAgeAlarmSeconds: number;
  readonly allotmentShareAlarmPercent: number;
}

export interface HlsyncStackProps extends StackProps {
  readonly settings: HlsyncSettings;
}

const FUNCTIONS = ['periodic-refresh', 'member-refresh'] as const;
type FunctionRole = (typeof FUNCTIONS)[number];

const MEMBER_REFRESH_TIMEOUT = Duration.seconds(120);
const PERIODIC_REFRESH_TIMEOUT = Duration.seconds(600);
// At least 6 x the Member Refresh timeout plus the largest batching window (60 s), as Lambda advises.
const QUEUE_VISIBILITY_TIMEOUT = Duration.seconds(900);

// The actions of the SAM policy templates the SAM template uses, so both stacks grant the same.
const DYNAMODB_CRUD = [
  'dynamodb:GetItem',
  'dynamodb:DeleteItem',
  'dynamodb:PutItem',
  'dynamodb:Scan',
  'dynamodb:Query',
  'dynamodb:UpdateItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:BatchGetItem',
  'dynamodb:DescribeTable',
  'dynamodb:ConditionCheckItem',
];
const SQS_SEND = ['sqs:SendMessage*'];
const SQS_POLL = [
  'sqs:ChangeMessageVisibility',
  'sqs:ChangeMessageVisibilityBatch',
  'sqs:DeleteMessage',
  'sqs:DeleteMessageBatch',
  'sqs:GetQueueAttributes',
  'sqs:ReceiveMessage',
];

const PLACEHOLDER_SECRET = JSON.stringify({
  salesforce: {
    login_url: 'https://login.salesforce.com',
    auth: 'client_credentials',
    client_id: 'REPLACE_ME',
    client_secret: 'REPLACE_ME',
  },
  higher_logic: { api_key: 'REPLACE_ME' },
});

/** `STACK-suffix`, resolved at deploy time as the SAM template's `${AWS::StackName}-suffix`. */
function named(suffix: string): string {
  return `${Aws.STACK_NAME}${suffix}`;
}

export class HlsyncStack extends Stack {
  constructor(scope: Construct, id: string, props: HlsyncStackProps) {
    super(scope, id, props);
    const s = props.settings;

    const config = new CfnParameter(this, 'HlsyncConfig', {
      type: 'String',
      minLength: 1,
      description:
        'The hlsync configuration: the TOML text itself (SPEC.md section 3), passed to both functions as HLSYNC_CONFIG. ' +
        'Pass it with --parameters HlsyncConfig="$(cat hlsync.toml)". It holds no credentials.',
    });

    // ------------------------------------------------------------ state and queues
    // The watermark and the last pushed hash of every member live here: losing them means a full
    // re-read of Salesforce, so the table survives a stack deletion or replacement.
    const table = new dynamodb.Table(this, 'StateTable', {
      tableName: named('-state'),
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'expires_at',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Built from the name, not the queue, because the queue already refers to the DLQ.
    const queueArn = `arn:${Aws.PARTITION}:sqs:${Aws.REGION}:${Aws.ACCOUNT_ID}:${named('-member-refresh')}`;
    const dlq = new sqs.Queue(this, 'MemberRefreshDeadLetterQueue', {
      queueName: named('-member-refresh-dlq'),
      // The longest SQS allows: an operator has two weeks to fix the cause and run `hlsync redrive`.
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      redriveAllowPolicy: {
        redrivePermission: sqs.RedrivePermission.BY_QUEUE,
        sourceQueues: [sqs.Queue.fromQueueArn(this, 'MemberRefreshQueueByName', queueArn)],
      },
    });
    const queue = new sqs.Queue(this, 'MemberRefreshQueue', {
      queueName: named('-member-refresh'),
      visibilityTimeout: QUEUE_VISIBILITY_TIMEOUT,
      retentionPeriod: Duration.days(4),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      deadLetterQueue: { queue: dlq, maxReceiveCount: 5 },
    });

    const secret: secretsmanager.ISecret =
      s.existingSecretArn === ''
        ? new secretsmanager.Secret(this, 'Secret', {
            secretName: named('/credentials'),
            description:
              'hlsync credentials for Salesforce and Higher Logic (SPEC.md section 4). Replace the placeholders; ' +
              'hlsync notices the new version by itself.',
            // Placeholders, not credentials: the functions refuse to log in until they are replaced.
            secretStringValue: SecretValue.unsafePlainText(PLACEHOLDER_SECRET),
            removalPolicy: RemovalPolicy.RETAIN,
          })
        : secretsmanager.Secret.fromSecretCompleteArn(this, 'Secret', s.existingSecretArn);

    // ------------------------------------------------------------ functions
    // No concurrency figure for Higher Logic: every function and CLI run takes its calls' slots
    // from one pace in the state table (item pace#higher-logic, an UpdateItem that DYNAMODB_CRUD
    // grants), so the limit holds however many instances run.
    const environment = {
      HLSYNC_CONFIG: config.valueAsString,
      HLSYNC_SECRET_ID: secret.secretArn,
      HLSYNC_STATE_TABLE: table.tableName,
      HLSYNC_QUEUE_URL: queue.queueUrl,
      HLSYNC_DLQ_URL: dlq.queueUrl,
      RUST_LOG: s.logLevel,
    };
    const architecture = s.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64;
    const repoRoot = path.resolve(__dirname, '..', '..', '..');

    const makeFunction = (role: FunctionRole, id: string, extra: Partial<lambda.FunctionOptions>): RustFunction => {
      const logGroup = new logs.LogGroup(this, `${id}LogGroup`, {
        logGroupName: `/aws/lambda/${named(`-${role}`)}`,
        retention: s.logRetentionDays as logs.RetentionDays,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      const fn = new RustFunction(this, `${id}Function`, {
        manifestPath: path.join(repoRoot, 'Cargo.toml'),
        binaryName: role,
        architecture,
        functionName: named(`-${role}`),
        memorySize: 256,
        environment,
        loggingFormat: lambda.LoggingFormat.JSON,
        logGroup,
        ...extra,
      });
      fn.addToRolePolicy(
        new iam.PolicyStatement({ actions: DYNAMODB_CRUD, resources: [table.tableArn, `${table.tableArn}/index/*`] }),
      );
      fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [secret.secretArn] }));
      // The secret cache checks the version when its entry expires; hlsync checks it to resume
      // after a rejected login.
      fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['secretsmanager:DescribeSecret'], resources: [secret.secretArn] }));
      return fn;
    };

    const periodic = makeFunction('periodic-refresh', 'PeriodicRefresh', {
      description: 'Periodic Refresh - fans changed Contact Ids out to the member-refresh queue',
      // Long enough to page a large change window; the handler stops starting work near the deadline
      // and the next run resumes from the watermark.
      timeout: PERIODIC_REFRESH_TIMEOUT,
      reservedConcurrentExecutions: s.periodicRefreshReservedConcurrency > 0 ? s.periodicRefreshReservedConcurrency : undefined,
      // A failed run is redone by the next scheduled one from the same watermark; Lambda's own
      // async retries would only overlap it and spend Salesforce calls twice.
      retryAttempts: 0,
    });
    periodic.addToRolePolicy(new iam.PolicyStatement({ actions: SQS_SEND, resources: [queue.queueArn] }));

    const member = makeFunction('member-refresh', 'MemberRefresh', {
      description: 'Member Refresh - re-reads changed Contacts and pushes members to Higher Logic',
      timeout: MEMBER_REFRESH_TIMEOUT,
    });
    member.addToRolePolicy(new iam.PolicyStatement({ actions: SQS_POLL, resources: [queue.queueArn] }));
    // A message that can never succeed (malformed body) goes straight to the DLQ with its reason
    // instead of taking five receives (docs/design.md, Work messages).
    member.addToRolePolicy(new iam.PolicyStatement({ actions: SQS_SEND, resources: [dlq.queueArn] }));
    // SQS_POLL copies SAM's SQSPollerPolicy, which names batch actions that IAM authorizes through the
    // single-message ones; cfn-lint (rightly) does not know them.
    const memberPolicy = member.role?.node.tryFindChild('DefaultPolicy')?.node.defaultChild;
    if (memberPolicy instanceof CfnResource) {
      memberPolicy.addMetadata('cfn-lint', { config: { ignore_checks: ['W3037'] } });
    }
    // A plain mapping, not SqsEventSource: that one adds its own broader grants; SQS_POLL above is
    // exactly what the SAM template grants.
    new lambda.EventSourceMapping(this, 'MemberRefreshEventSource', {
      target: member,
      eventSourceArn: queue.queueArn,
      batchSize: s.memberRefreshBatchSize,
      maxBatchingWindow: Duration.seconds(s.memberRefreshBatchingWindowSeconds),
      // One bad Contact fails its own message, not the batch.
      reportBatchItemFailures: true,
      maxConcurrency: s.memberRefreshMaxConcurrency,
    });

    // ------------------------------------------------------------ schedule
    const scheduleRole = new iam.Role(this, 'PeriodicRefreshScheduleRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
    });
    scheduleRole.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [periodic.functionArn] }));
    new scheduler.CfnSchedule(this, 'PeriodicRefreshSchedule', {
      name: named('-periodic-refresh'),
      description: 'hlsync Periodic Refresh',
      scheduleExpression: `rate(${s.scheduleIntervalMinutes} minutes)`,
      state: s.scheduleState,
      flexibleTimeWindow: { mode: 'OFF' },
      target: {
        arn: periodic.functionArn,
        roleArn: scheduleRole.roleArn,
        // The scheduled time anchors the run on the schedule, not on a late invocation; the
        // execution id ties the run's logs to the scheduler's.
        input: JSON.stringify({
          scheduled_time: '<aws.scheduler.scheduled-time>',
          execution_id: '<aws.scheduler.execution-id>',
        }),
        retryPolicy: { maximumRetryAttempts: 0, maximumEventAgeInSeconds: 300 },
      },
    });

    // ------------------------------------------------------------ operators
    const operatorPolicy = new iam.ManagedPolicy(this, 'OperatorPolicy', {
      description: 'Attach to the operator role or user that runs `hlsync status` and `hlsync redrive` against this stack.',
      statements: [
        new iam.PolicyStatement({
          sid: 'RedriveFromDeadLetterQueue',
          actions: [
            'sqs:StartMessageMoveTask',
            'sqs:ListMessageMoveTasks',
            'sqs:CancelMessageMoveTask',
            'sqs:ReceiveMessage',
            'sqs:DeleteMessage',
            'sqs:ChangeMessageVisibility',
            'sqs:GetQueueAttributes',
            'sqs:GetQueueUrl',
          ],
          resources: [dlq.queueArn],
        }),
        new iam.PolicyStatement({
          sid: 'RedriveToQueue',
          actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
          resources: [queue.queueArn],
        }),
        new iam.PolicyStatement({
          sid: 'ReadStatus',
          actions: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:DescribeTable'],
          resources: [table.tableArn],
        }),
      ],
    });

    // ------------------------------------------------------------ alarms
    let alarmTarget: string;
    if (s.alarmActionArn === '') {
      const topic = new sns.Topic(this, 'AlarmTopic', {
        topicName: named('-alarms'),
        masterKey: kms.Alias.fromAliasName(this, 'SnsManagedKey', 'alias/aws/sns'),
      });
      if (s.alarmEmail !== '') {
        topic.addSubscription(new subscriptions.EmailSubscription(s.alarmEmail));
      }
      alarmTarget = topic.topicArn;
    } else {
      alarmTarget = s.alarmActionArn;
    }
    const alarmAction: cloudwatch.IAlarmAction = { bind: () => ({ alarmActionArn: alarmTarget }) };

    const alarm = (
      id: string,
      name: string,
      description: string,
      metric: cloudwatch.Metric,
      threshold: number,
      evaluationPeriods = 1,
      datapointsToAlarm?: number,
    ): void => {
      const a = new cloudwatch.Alarm(this, id, {
        alarmName: named(`-${name}`),
        alarmDescription: description,
        metric,
        threshold,
        evaluationPeriods,
        datapointsToAlarm,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      a.addAlarmAction(alarmAction);
      a.addOkAction(alarmAction);
    };
    const fiveMinutes = Duration.minutes(5);
    const hlsyncMetric = (metricName: string, fn: FunctionRole, statistic: string): cloudwatch.Metric =>
      new cloudwatch.Metric({ namespace: 'hlsync', metricName, dimensionsMap: { Function: fn }, statistic, period: fiveMinutes });

    alarm(
      'DeadLetterQueueAlarm',
      'dlq-not-empty',
      'Members failed 5 times and were dead-lettered. Read the member-refresh logs for the ContactId, ' +
        'fix the cause, then run `hlsync redrive`.',
      dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: fiveMinutes }),
      0,
    );
    alarm(
      'QueueAgeAlarm',
      'queue-age',
      'Member Refresh is falling behind: check its errors and throttles, the Higher Logic rate limit, and the ' +
        'AllotmentShare metric (hlsync pauses near the Salesforce allotment).',
      queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: fiveMinutes }),
      s.queueAgeAlarmSeconds,
      2,
    );
    const errorsHelp: Record<FunctionRole, string> = {
      'periodic-refresh':
        'Periodic Refresh failed; the watermark did not move. Read its log group (login rejected, config error, ' +
        'Salesforce unavailable) or run `hlsync status`.',
      'member-refresh':
        'Member Refresh invocations failed as a whole (failed members alone are partial batch failures and do not ' +
        'count here). Read its log group.',
    };
    for (const [role, fn, id] of [
      ['periodic-refresh', periodic, 'PeriodicRefresh'],
      ['member-refresh', member, 'MemberRefresh'],
    ] as const) {
      alarm(`${id}ErrorsAlarm`, `${role}-errors`, errorsHelp[role], fn.metricErrors({ statistic: 'Sum', period: fiveMinutes }), 0);
      alarm(
        `${id}AllotmentAlarm`,
        `${role}-allotment`,
        "The org's Salesforce API usage is nearing the share hlsync may use. Lower the schedule frequency or raise " +
          'max_allotment_share / daily_api_allotment in the config.',
        hlsyncMetric('AllotmentShare', role, 'Maximum'),
        s.allotmentShareAlarmPercent,
      );
    }

    alarm(
      'OptOutFailedAlarm',
      'opt-out-failed',
      'Salesforce refused to write email opt-outs made in Higher Logic to Contact.HasOptedOutOfEmail in two runs in ' +
        'a row (each run retries them). Read the periodic-refresh log group for the Contact Ids and the reason ' +
        '(field-level security, a validation rule, a locked record) and fix it: until then Salesforce may still email them.',
      // One period per scheduled run, so that two datapoints are two runs in a row.
      hlsyncMetric('OptOutFailed', 'periodic-refresh', 'Sum').with({ period: Duration.minutes(s.scheduleIntervalMinutes) }),
      0,
      2,
      2,
    );

    // ------------------------------------------------------------ dashboard
    const both = (metricName: string, statistic: string): cloudwatch.Metric[] =>
      FUNCTIONS.map((fn) => hlsyncMetric(metricName, fn, statistic));
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { dashboardName: named('-overview') });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Periodic Refresh: contacts changed',
        width: 12,
        left: [hlsyncMetric('ContactsChanged', 'periodic-refresh', 'Sum')],
      }),
      new cloudwatch.GraphWidget({
        title: 'Member Refresh: members',
        width: 12,
        left: ['MembersPushed', 'MembersSkipped', 'MembersDeactivated', 'MessagesFailed'].map((m) =>
          hlsyncMetric(m, 'member-refresh', 'Sum'),
        ),
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Salesforce API allotment in use (%)',
        width: 8,
        left: both('AllotmentShare', 'Maximum'),
        leftYAxis: { min: 0, max: 100 },
        leftAnnotations: [{ label: 'alarm', value: s.allotmentShareAlarmPercent }],
      }),
      new cloudwatch.GraphWidget({
        title: 'API calls',
        width: 8,
        left: [...both('SalesforceApiCalls', 'Sum'), ...both('HigherLogicCalls', 'Sum')],
      }),
      new cloudwatch.GraphWidget({ title: 'Run duration (ms)', width: 8, left: both('RunDurationMs', 'Maximum') }),
    );
    const oneMinute = { statistic: 'Maximum', period: Duration.minutes(1) };
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Queue depth',
        width: 8,
        left: [
          queue.metricApproximateNumberOfMessagesVisible(oneMinute),
          queue.metricApproximateNumberOfMessagesNotVisible(oneMinute),
          dlq.metricApproximateNumberOfMessagesVisible({ ...oneMinute, label: 'dead-letter queue' }),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: 'Age of oldest message (s)',
        width: 8,
        left: [queue.metricApproximateAgeOfOldestMessage(oneMinute)],
        leftAnnotations: [{ label: 'alarm', value: s.queueAgeAlarmSeconds }],
      }),
      new cloudwatch.GraphWidget({
        title: 'Function errors and throttles',
        width: 8,
        left: [
          periodic.metricErrors({ statistic: 'Sum', period: fiveMinutes }),
          member.metricErrors({ statistic: 'Sum', period: fiveMinutes }),
          member.metricThrottles({ statistic: 'Sum', period: fiveMinutes }),
        ],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Function duration (ms)',
        width: 24,
        left: [
          periodic.metricDuration({ statistic: 'Maximum', period: fiveMinutes }),
          member.metricDuration({ statistic: 'Maximum', period: fiveMinutes }),
        ],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Member Refresh: meetings and registrations',
        width: 8,
        left: ['MeetingsPushed', 'RegistrationsPushed'].map((m) => hlsyncMetric(m, 'member-refresh', 'Sum')),
      }),
      new cloudwatch.GraphWidget({
        title: 'Periodic Refresh: full refresh (formula fields)',
        width: 8,
        left: [hlsyncMetric('FullRefreshQueued', 'periodic-refresh', 'Sum')],
      }),
      new cloudwatch.GraphWidget({
        title: 'Periodic Refresh: email opt-out write-back',
        width: 8,
        left: ['OptOutChanges', 'OptOutWritten', 'OptOutFailed'].map((m) => hlsyncMetric(m, 'periodic-refresh', 'Sum')),
      }),
    );

    // ------------------------------------------------------------ outputs
    const output = (id: string, value: string, description: string): void => {
      new CfnOutput(this, id, { value, description });
    };
    output('StateTableName', table.tableName, 'DynamoDB table with the watermarks and push state (HLSYNC_STATE_TABLE)');
    output('QueueUrl', queue.queueUrl, 'Member Refresh queue (HLSYNC_QUEUE_URL)');
    output('DeadLetterQueueUrl', dlq.queueUrl, 'Member Refresh dead-letter queue (HLSYNC_DLQ_URL); `hlsync redrive` empties it');
    output('SecretArn', secret.secretArn, 'Secret with the Salesforce and Higher Logic credentials (HLSYNC_SECRET_ID)');
    output('PeriodicRefreshFunctionName', periodic.functionName, 'The scheduled Periodic Refresh function');
    output('MemberRefreshFunctionName', member.functionName, 'The SQS-triggered Member Refresh function');
    output('OperatorPolicyArn', operatorPolicy.managedPolicyArn, 'Managed policy to attach to the operator role that runs hlsync status / redrive');
    output('AlarmTopicArn', alarmTarget, 'Where the alarms go');
    output('DashboardName', dashboard.dashboardName, 'CloudWatch dashboard for this stack');
  }
}
