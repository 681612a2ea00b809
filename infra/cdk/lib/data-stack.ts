// The stateful part: DynamoDB tables, the telemetry store and the API access logs.
// Everything here is retained when the stack is deleted, and no physical name is fixed
// (a retained resource with a fixed name would block the next deployment), except the
// stage lock (stage-lock.ts), which is not retained and whose fixed name is the point.
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as timestream from 'aws-cdk-lib/aws-timestream';
import { Construct } from 'constructs';
import { TelemetrySink } from './config';
import { EventFeedBus } from './feed';
import { StageLock } from './stage-lock';

export interface DataStackProps extends StackProps {
  readonly stage: string;
  /** Days the API access logs are kept (a CloudWatch Logs retention value). */
  readonly apiAccessLogRetentionDays: number;
  readonly telemetrySink: TelemetrySink;
  /** Magnetic store retention of the Timestream table (timestream sink), in days. */
  readonly telemetryRetentionDays: number;
  /** Days the event bus's archive keeps the platform's events. */
  readonly feedArchiveDays: number;
}

export interface TimestreamStore {
  readonly database: timestream.CfnDatabase;
  readonly table: timestream.CfnTable;
  readonly databaseName: string;
  readonly tableName: string;
  readonly tableArn: string;
  readonly rejectedDataBucket: s3.Bucket;
}

/**
 * Key schema shared by every table (single-table style per store), the names the Rust
 * adapters use (shared/src/adapters/dynamodb: GSI1, GSI2, create.rs).
 */
export const KEYS = {
  pk: 'pk',
  sk: 'sk',
  gsi: 'gsi1',
  gsiPk: 'gsi1pk',
  gsiSk: 'gsi1sk',
  /** Twins only: sparse, only online devices carry gsi2pk/gsi2sk (the presence sweep). */
  gsi2: 'gsi2',
  gsi2Pk: 'gsi2pk',
  gsi2Sk: 'gsi2sk',
  ttl: 'expiresAt',
} as const;

/** What a table's gsi1 projects: only what the queries on it read. */
interface TableOptions {
  /** gsi1 projection: KEYS_ONLY when its readers fetch the items by key afterwards. */
  readonly gsi1: dynamodb.ProjectionType;
  /** Add the sparse KEYS_ONLY gsi2. */
  readonly gsi2?: boolean;
  /** A stream of the table's changes. */
  readonly stream?: dynamodb.StreamViewType;
}

export class DataStack extends Stack {
  public readonly twins: dynamodb.Table;
  public readonly schemas: dynamodb.Table;
  public readonly commands: dynamodb.Table;
  public readonly events: dynamodb.Table;
  /** Set when the telemetry sink is DynamoDB. */
  public readonly telemetryTable?: dynamodb.Table;
  /** Set when the telemetry sink is Timestream. */
  public readonly timestream?: TimestreamStore;
  public readonly telemetrySink: TelemetrySink;
  /** Where API Gateway writes one line per request (the api stack's stage). */
  public readonly apiAccessLogs: logs.LogGroup;
  public readonly stageLock: StageLock;
  /** The event feed (feed.ts): teams attach their rules to it, so it outlives the functions. */
  public readonly eventBus: EventFeedBus;
  /** The console's operators (console.ts): people, so retained like the data. */
  public readonly operators: cognito.UserPool;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);
    this.telemetrySink = props.telemetrySink;
    this.stageLock = new StageLock(this, 'StageLock', { stage: props.stage });

    // Twins: listing by namespace/name reads only keys from gsi1, then BatchGets the
    // twins; the presence sweep queries gsi2 (online devices) for keys only as well.
    this.twins = this.table('Twins', 'TwinsTable', { gsi1: dynamodb.ProjectionType.KEYS_ONLY, gsi2: true });
    // The others read whole items from gsi1 (commands and events by device); schemas and
    // telemetry write no gsi1 attributes, so theirs stays empty and costs nothing.
    this.schemas = this.table('Schemas', 'SchemasTable', { gsi1: dynamodb.ProjectionType.ALL });
    this.commands = this.table('Commands', 'CommandsTable', { gsi1: dynamodb.ProjectionType.ALL });
    // Its stream carries each new event to the event feed (functions-stack.ts, event-feed).
    this.events = this.table('Events', 'EventsTable', { gsi1: dynamodb.ProjectionType.ALL, stream: dynamodb.StreamViewType.NEW_IMAGE });
    this.eventBus = new EventFeedBus(this, 'EventFeed', { archiveDays: props.feedArchiveDays });

    // Only an administrator creates operators (infra/cdk/README.md, "Console").
    this.operators = new cognito.UserPool(this, 'Operators', {
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      mfa: cognito.Mfa.OPTIONAL,
      mfaSecondFactor: { otp: true, sms: false },
      passwordPolicy: { minLength: 12, requireLowercase: true, requireUppercase: true, requireDigits: true, requireSymbols: false },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    new CfnOutput(this, 'OperatorsUserPoolId', { value: this.operators.userPoolId, description: 'Console operators (admin-create-user, then a group per job)' });

    new CfnOutput(this, 'TelemetrySink', { value: props.telemetrySink, description: 'timestream or dynamodb' });

    if (props.telemetrySink === 'dynamodb') {
      this.telemetryTable = this.table('Telemetry', 'TelemetryTable', { gsi1: dynamodb.ProjectionType.ALL });
    } else {
      this.timestream = this.timestreamStore(props.telemetryRetentionDays);
      new CfnOutput(this, 'TimestreamDatabase', { value: this.timestream.databaseName });
      new CfnOutput(this, 'TimestreamTable', { value: this.timestream.tableName });
      new CfnOutput(this, 'TelemetryRejectedDataBucket', {
        value: this.timestream.rejectedDataBucket.bucketName,
        description: 'Records Timestream rejected from magnetic store writes (retained, like the tables)',
      });
    }

    // The audit trail of the operator API (who called which route, with what result):
    // retained like the tables, so deleting the stage keeps the record.
    this.apiAccessLogs = new logs.LogGroup(this, 'ApiAccessLogs', {
      retention: props.apiAccessLogRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    new CfnOutput(this, 'ApiAccessLogGroup', { value: this.apiAccessLogs.logGroupName, description: 'API Gateway access logs (caller identity per request)' });

    // Nothing of this stage is created before the lock is taken: a second stage in this
    // account and region fails on the lock and leaves no table behind.
    for (const child of this.node.children) {
      if (child !== this.stageLock && child instanceof Construct && !(child instanceof CfnOutput)) child.node.addDependency(this.stageLock);
    }
  }

  private table(id: string, outputId: string, options: TableOptions): dynamodb.Table {
    const table = new dynamodb.Table(this, id, {
      stream: options.stream,
      partitionKey: { name: KEYS.pk, type: dynamodb.AttributeType.STRING },
      sortKey: { name: KEYS.sk, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: KEYS.ttl,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // CloudFormation and the console cannot delete the table while this is on.
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    table.addGlobalSecondaryIndex({
      indexName: KEYS.gsi,
      partitionKey: { name: KEYS.gsiPk, type: dynamodb.AttributeType.STRING },
      sortKey: { name: KEYS.gsiSk, type: dynamodb.AttributeType.STRING },
      projectionType: options.gsi1,
    });
    if (options.gsi2) {
      table.addGlobalSecondaryIndex({
        indexName: KEYS.gsi2,
        partitionKey: { name: KEYS.gsi2Pk, type: dynamodb.AttributeType.STRING },
        sortKey: { name: KEYS.gsi2Sk, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.KEYS_ONLY,
      });
    }
    new CfnOutput(this, outputId, { value: table.tableName });
    return table;
  }

  private timestreamStore(retentionDays: number): TimestreamStore {
    // Records that Timestream rejects from magnetic store writes (late data) land here.
    const rejectedDataBucket = new s3.Bucket(this, 'TelemetryRejectedData', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: false,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'expire-rejected-records', expiration: Duration.days(365) }],
    });

    const database = new timestream.CfnDatabase(this, 'TelemetryDatabase', {});
    database.applyRemovalPolicy(RemovalPolicy.RETAIN);

    const table = new timestream.CfnTable(this, 'TelemetryTable', {
      databaseName: database.ref,
      retentionProperties: {
        MemoryStoreRetentionPeriodInHours: '24',
        MagneticStoreRetentionPeriodInDays: String(retentionDays),
      },
      // Devices replay days-old telemetry after an outage: it must be accepted into the magnetic store.
      magneticStoreWriteProperties: {
        EnableMagneticStoreWrites: true,
        MagneticStoreRejectedDataLocation: {
          S3Configuration: {
            BucketName: rejectedDataBucket.bucketName,
            EncryptionOption: 'SSE_S3',
            ObjectKeyPrefix: 'rejected/',
          },
        },
      },
    });
    table.applyRemovalPolicy(RemovalPolicy.RETAIN);

    return {
      database,
      table,
      databaseName: database.ref,
      tableName: table.attrName,
      tableArn: table.attrArn,
      rejectedDataBucket,
    };
  }
}
